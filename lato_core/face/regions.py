"""Region masks from 68 landmarks, by name (subject's left/right), 1 = edit, as ComfyUI's MASK expects.

Lip regions stop at the inner lip line, so the open mouth is not part of them ("mouth" includes it).
Polygons only: no hair, ears or neck (those need a face-parsing model). The brows get a band below the
iBUG points (which follow the upper brow edge), the face oval gets a forehead above the brows, the nose a
bridge as wide as a quarter of the eye distance.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ..errors import FaceEditError
from .landmarks import FaceLandmarks

FOREHEAD_LIFT = 0.25      # of the chin-to-bridge distance
BROW_BAND = (0.05, 0.16)  # above / below the brow points, of the eye distance
NOSE_BRIDGE_HALF_WIDTH = 0.12

_LIPS_UPPER = [48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]
_LIPS_LOWER = [54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]


def _axes(face: FaceLandmarks) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit vectors across the face (toward the subject's left) and down it, and the eye distance."""
    right, left = face.eye_centres()
    across = left - right
    iod = float(np.linalg.norm(across)) or 1.0
    across = across / iod
    down = np.array([-across[1], across[0]])
    if np.dot(down, face.points[8] - face.points[27]) < 0:
        down = -down
    return across, down, iod


def _brow(face: FaceLandmarks, indices: range) -> np.ndarray:
    _, down, iod = _axes(face)
    pts = face.points[list(indices)]
    upper = pts - down * BROW_BAND[0] * iod
    lower = pts + down * BROW_BAND[1] * iod
    return np.vstack([upper, lower[::-1]])


def _face_oval(face: FaceLandmarks) -> np.ndarray:
    _, down, _ = _axes(face)
    lift = FOREHEAD_LIFT * float(np.linalg.norm(face.points[8] - face.points[27]))
    brows = face.points[26:16:-1] - down * lift
    return np.vstack([face.points[0:17], brows])


def _nose(face: FaceLandmarks) -> np.ndarray:
    across, _, iod = _axes(face)
    top = face.points[27]
    half = across * NOSE_BRIDGE_HALF_WIDTH * iod
    return np.vstack([top - half, face.points[31:36], top + half])


REGIONS = {
    "face_oval": _face_oval,
    "right_brow": lambda f: _brow(f, range(17, 22)),
    "left_brow": lambda f: _brow(f, range(22, 27)),
    "right_eye": lambda f: f.points[36:42],
    "left_eye": lambda f: f.points[42:48],
    "nose": _nose,
    "upper_lip": lambda f: f.points[_LIPS_UPPER],
    "lower_lip": lambda f: f.points[_LIPS_LOWER],
    "inner_mouth": lambda f: f.points[60:68],
    "mouth": lambda f: f.points[48:60],
}
# Names users type that mean the same region.
ALIASES = {"left_eyebrow": "left_brow", "right_eyebrow": "right_brow", "lips": ("upper_lip", "lower_lip"), "face": "face_oval",
           "eyes": ("left_eye", "right_eye"), "brows": ("left_brow", "right_brow")}


def parse_region_names(text: str) -> list[str]:
    names = []
    for raw in text.replace(";", ",").replace("+", ",").split(","):
        key = raw.strip().lower().replace(" ", "_").replace("-", "_")
        if not key:
            continue
        key = ALIASES.get(key, key)
        for name in (key if isinstance(key, tuple) else (key,)):
            if name not in REGIONS:
                raise FaceEditError(f"Unknown region '{raw.strip()}'. Known regions: {', '.join(REGIONS)} "
                                    f"(also {', '.join(ALIASES)}).")
            names.append(name)
    if not names:
        raise FaceEditError(f"Name at least one region, e.g. 'left_eye, right_eye'. Known: {', '.join(REGIONS)}.")
    return names


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Monotone-chain hull, counter-clockwise."""
    pts = sorted(map(tuple, np.asarray(points, dtype=np.float64)))
    if len(pts) < 3:
        return np.asarray(pts)

    def half(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and np.cross(np.subtract(out[-1], out[-2]), np.subtract(p, out[-2])) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]

    return np.asarray(half(pts) + half(pts[::-1]))


def region_polygons(face: FaceLandmarks, names: list[str], hull: bool = False) -> list[np.ndarray]:
    polys = [REGIONS[n](face) for n in names]
    return [convex_hull(p) for p in polys] if hull else polys


def region_mask(faces: list[FaceLandmarks], names: list[str], size: tuple[int, int] | None = None,
                grow: float = 0.0, hull: bool = False, feather: float = 0.0) -> np.ndarray:
    """(H, W) float32 mask in 0..1 of the named regions of all faces.

    grow > 0 dilates and grow < 0 erodes by that many pixels (Euclidean); feather blurs the edge with a
    Gaussian of sigma feather / 2. size (w, h) defaults to the landmarks' image size.
    """
    w, h = size or faces[0].image_size
    canvas = Image.new("L", (w, h))
    pen = ImageDraw.Draw(canvas)
    for face in faces:
        for poly in region_polygons(face, names, hull):
            pen.polygon([tuple(p) for p in poly], fill=255)
    mask = np.asarray(canvas) > 127
    if grow > 0:
        mask = ndimage.distance_transform_edt(~mask) <= grow
    elif grow < 0:
        mask = ndimage.distance_transform_edt(mask) > -grow
    out = mask.astype(np.float32)
    if feather > 0:
        out = ndimage.gaussian_filter(out, sigma=feather / 2.0)
    return np.clip(out, 0.0, 1.0)
