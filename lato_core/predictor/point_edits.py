"""Hand edits of 68 landmarks, as the canvas Landmark Editor stores them in the workflow.

The editor saves offsets, not absolute points, so an edit keeps its meaning when the detection under it
moves a little (another backend, a re-run):

    {"version": 1, "faces": {"0": [[dx, dy], ... 68 pairs], ...}}

Keys are the face's position in the landmark list (0 = first face); pixels of the face's own canvas
(the crop). Faces without an entry are passed through unchanged.
"""
from __future__ import annotations

import json

import numpy as np

from ..errors import LandmarkFormatError
from ..face.json_limits import TooDeep, loads_bounded
from ..face.landmarks import LIMITS, NUM_POINTS, FaceLandmarks

VERSION = 1
MAX_CHARS = 200_000
HINT = "Press Reset on the Landmark Editor node to start again, or paste JSON saved by the editor."


def parse_point_edits(text: str) -> dict[int, np.ndarray]:
    """{face position: (68, 2) offsets} from the editor's JSON; '' or '{}' means no edits."""
    if not isinstance(text, str):
        raise LandmarkFormatError(f"Landmark edits must be JSON text, got {type(text).__name__}. {HINT}")
    if not text.strip():
        return {}
    if len(text) > MAX_CHARS:
        raise LandmarkFormatError(f"Landmark edits are {len(text):,} characters; the limit is {MAX_CHARS:,}. {HINT}")
    try:
        data = loads_bounded(text, LIMITS["json_depth"])
    except (ValueError, TooDeep) as e:
        raise LandmarkFormatError(f"Landmark edits are not valid JSON ({str(e)[:80]}). {HINT}") from None
    if not isinstance(data, dict):
        raise LandmarkFormatError(f"Landmark edits must be a JSON object {{\"faces\": ...}}. {HINT}")
    if data.get("version", VERSION) != VERSION:
        raise LandmarkFormatError(f"Landmark edits have version {str(data.get('version'))[:20]}; this pack reads "
                                  f"version {VERSION}. {HINT}")
    faces = data.get("faces", {})
    if not isinstance(faces, dict):
        raise LandmarkFormatError(f"'faces' must map a face number (\"0\", \"1\"...) to 68 [dx, dy] offsets. {HINT}")
    return {_face_key(key): _offsets(key, value) for key, value in faces.items()}


def _face_key(key: str) -> int:
    if not (isinstance(key, str) and key.isascii() and key.isdigit() and int(key) <= LIMITS["faces"]):
        raise LandmarkFormatError(f"Face key {key[:20]!r} must be a face number from 0 to {LIMITS['faces']}. {HINT}")
    return int(key)


def _offsets(key: str, value) -> np.ndarray:
    limit = LIMITS["max_side"]
    ok = isinstance(value, list) and len(value) == NUM_POINTS and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
        for p in value)
    offsets = np.asarray(value, dtype=np.float64) if ok else None
    if offsets is None or not np.isfinite(offsets).all() or np.abs(offsets).max() > limit:
        raise LandmarkFormatError(f"Edits of face {key} must be {NUM_POINTS} [dx, dy] pairs of finite pixel offsets "
                                  f"within +-{limit}. {HINT}")
    return offsets


def apply_point_edits(faces: list[FaceLandmarks], edits: dict[int, np.ndarray]) -> list[FaceLandmarks]:
    """Each face moved by its offsets; points pushed past the canvas edge stop on it."""
    out = []
    for position, face in enumerate(faces):
        offsets = edits.get(position)
        if offsets is None or not offsets.any():
            out.append(face)
            continue
        w, h = face.image_size
        points = (face.points + offsets).clip(-0.5, [w - 0.5, h - 0.5])
        out.append(face.with_points(points, backend=f"{face.backend}+hand"))
    return out


def edits_to_json(edits: dict[int, np.ndarray]) -> str:
    """The editor's format, e.g. to prepare edits outside the UI."""
    faces = {str(k): np.round(np.asarray(v, float), 3).tolist() for k, v in sorted(edits.items())}
    return json.dumps({"version": VERSION, "faces": faces})
