"""The 68-point landmark type (iBUG-68 order), its validation and JSON form.

Coordinates are pixels with the centre of pixel (i, j) at x=j, y=i (OpenCV/dlib convention), origin top-left.
"Left" and "right" in region names are the subject's own sides: iBUG 36-41 is the subject's RIGHT eye,
which appears on the LEFT of the picture.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import LandmarkFormatError
from .json_limits import TooDeep, loads_bounded

NUM_POINTS = 68

# iBUG-68 groups as index ranges, subject's sides.
GROUPS = {
    "jaw": range(0, 17),
    "right_brow": range(17, 22),
    "left_brow": range(22, 27),
    "nose_bridge": range(27, 31),
    "nose_lower": range(31, 36),
    "right_eye": range(36, 42),
    "left_eye": range(42, 48),
    "outer_lips": range(48, 60),
    "inner_lips": range(60, 68),
}


@dataclass
class FaceLandmarks:
    """One face: 68 (x, y) points on an image of `image_size` = (width, height).

    visibility is 1 for a visible point and 0 for a missing or occluded one.
    box is (x0, y0, x1, y1) of the detector, score its confidence, image_index the batch index.
    mesh478 keeps a MediaPipe mesh when the backend produced one (for the core FACE_LANDMARKS type).
    """

    points: np.ndarray
    image_size: tuple[int, int]
    visibility: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    score: float = 1.0
    backend: str = "unknown"
    image_index: int = 0
    mesh478: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        self.points = np.asarray(self.points, dtype=np.float64)
        if self.visibility is None:
            self.visibility = np.ones(NUM_POINTS, dtype=np.float64)
        self.visibility = np.asarray(self.visibility, dtype=np.float64)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.box is None:
            self.box = bounding_box(self.points, self.visibility)
        self.box = tuple(float(v) for v in self.box)
        validate(self)

    @property
    def width(self) -> int:
        return self.image_size[0]

    @property
    def height(self) -> int:
        return self.image_size[1]

    def group(self, name: str) -> np.ndarray:
        return self.points[list(GROUPS[name])]

    def eye_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(subject's right eye, subject's left eye) centres."""
        return self.group("right_eye").mean(axis=0), self.group("left_eye").mean(axis=0)

    def interocular(self) -> float:
        right, left = self.eye_centres()
        return float(np.linalg.norm(left - right))

    def with_points(self, points: np.ndarray, image_size=None, **changes) -> "FaceLandmarks":
        """A copy with new points (and box recomputed from them unless given)."""
        size = image_size if image_size is not None else self.image_size
        changes.setdefault("box", None)
        changes.setdefault("mesh478", None)
        return replace(self, points=np.asarray(points, dtype=np.float64), image_size=size, **changes)

    def to_dict(self) -> dict:
        return {
            "format": "ibug68",
            "image_size": list(self.image_size),
            "points": [[round(float(x), 3), round(float(y), 3)] for x, y in self.points],
            "visibility": [round(float(v), 3) for v in self.visibility],
            "box": [round(v, 3) for v in self.box],
            "score": float(self.score),
            "backend": self.backend,
            "image_index": int(self.image_index),
        }

    @classmethod
    def from_dict(cls, data: dict, out_of_canvas: str = "error") -> "FaceLandmarks":
        """out_of_canvas: 'error' rejects points beyond the image, 'clamp' moves them onto its edge,
        'hide' does that and marks them invisible. Every field is type- and range-checked (see LIMITS)."""
        if not isinstance(data, dict):
            raise LandmarkFormatError(f"Each face must be a JSON object with 'points' and 'image_size', got {type(data).__name__}.")
        if "points" not in data or "image_size" not in data:
            raise LandmarkFormatError("Landmark JSON needs 'points' (68 [x, y] pairs) and 'image_size' ([width, height]).")
        if out_of_canvas not in ("error", "clamp", "hide"):
            raise LandmarkFormatError(f"Unknown out_of_canvas policy '{out_of_canvas}'; use error, clamp or hide.")
        if data.get("format", "ibug68") != "ibug68":
            raise LandmarkFormatError(f"'format' is {str(data['format'])[:40]!r}; this pack reads 'ibug68' (68 iBUG points).")
        points = _as_points(data["points"])
        size = checked_image_size(data["image_size"])
        visibility = _visibility(data.get("visibility"))
        if out_of_canvas in ("clamp", "hide"):
            limit = np.array([size[0] - 0.5, size[1] - 0.5])
            outside = ((points < -0.5) | (points > limit)).any(axis=1)
            points = points.clip(-0.5, limit)
            if out_of_canvas == "hide":
                visibility = np.where(outside, 0.0, np.ones(NUM_POINTS) if visibility is None else visibility)
        return cls(
            points=points,
            image_size=size,
            visibility=visibility,
            box=_box(data.get("box"), size),
            score=_number(data.get("score", 1.0), "score", -LIMITS["score"], LIMITS["score"]),
            backend=_text(data.get("backend", "json"), "backend"),
            image_index=int(_number(data.get("image_index", 0), "image_index", 0, LIMITS["image_index"], whole=True)),
        )


# Bounds of the JSON fields: a face on a canvas of at most max_side per side and max_pixels in all.
LIMITS = {"max_side": 16384, "max_pixels": 100_000_000, "image_index": 1023, "score": 1e6, "faces": 256,
          "json_chars": 2_000_000, "json_depth": 16, "backend_chars": 64}


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _number(v, name: str, lo: float, hi: float, whole: bool = False) -> float:
    kind = "a whole number" if whole else "a number"
    if not _is_number(v):
        raise LandmarkFormatError(f"'{name}' must be {kind} from {lo:g} to {hi:g}, got {json.dumps(v, default=str)[:40]}.")
    try:
        x = float(v)
    except OverflowError:
        x = float("inf")
    if not (np.isfinite(x) and lo <= x <= hi) or (whole and x != int(x)):
        raise LandmarkFormatError(f"'{name}' is {str(v)[:40]}; it must be {kind} from {lo:g} to {hi:g}. Fix the value "
                                  "in the JSON (Save Face Landmarks writes valid files).")
    return x


def checked_image_size(raw) -> tuple[int, int]:
    if not (isinstance(raw, (list, tuple)) and len(raw) == 2):
        raise LandmarkFormatError(f"'image_size' must be [width, height] in pixels, got {json.dumps(raw, default=str)[:60]}.")
    w, h = (int(_number(v, f"image_size {n}", 1, LIMITS["max_side"], whole=True)) for v, n in zip(raw, ("width", "height")))
    if w * h > LIMITS["max_pixels"]:
        raise LandmarkFormatError(f"'image_size' {w}x{h} is {w * h / 1e6:.0f} MP; the limit is "
                                  f"{LIMITS['max_pixels'] // 1_000_000} MP. Use the size of the photo the landmarks belong to.")
    return w, h


def _visibility(raw) -> np.ndarray | None:
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple)) or len(raw) != NUM_POINTS:
        got = f"{len(raw)} entries" if isinstance(raw, (list, tuple)) else type(raw).__name__
        raise LandmarkFormatError(f"'visibility' needs {NUM_POINTS} numbers (1 visible, 0 hidden), one per point; got "
                                  f"{got}. Fix the list or leave 'visibility' out (all visible).")
    return np.array([_number(v, f"visibility[{i}]", 0, 1) for i, v in enumerate(raw)])


def _box(raw, size) -> tuple[float, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise LandmarkFormatError("'box' must be [x0, y0, x1, y1] in pixels; leave it out to compute it from the points.")
    span = 2 * max(size)
    x0, y0, x1, y1 = (_number(v, f"box[{i}]", -span, span) for i, v in enumerate(raw))
    if x1 < x0 or y1 < y0:
        raise LandmarkFormatError(f"'box' {[x0, y0, x1, y1]} has x1 < x0 or y1 < y0; it must be [x0, y0, x1, y1].")
    return x0, y0, x1, y1


def _text(raw, name: str) -> str:
    if not isinstance(raw, str) or len(raw) > LIMITS["backend_chars"]:
        raise LandmarkFormatError(f"'{name}' must be a string of at most {LIMITS['backend_chars']} characters.")
    return raw


def _as_points(raw) -> np.ndarray:
    if not isinstance(raw, (list, tuple, np.ndarray)):
        raise LandmarkFormatError(f"'points' must be a list of 68 [x, y] pairs, got {type(raw).__name__}.")
    if len(raw) != NUM_POINTS:
        raise LandmarkFormatError(f"Expected {NUM_POINTS} landmark points in iBUG-68 order, got {len(raw)}.")
    for i, p in enumerate(raw):
        if not (isinstance(p, (list, tuple, np.ndarray)) and len(p) == 2 and all(_is_number(v) for v in p)):
            raise LandmarkFormatError(f"Point {i} must be a pair of numbers [x, y], got {json.dumps(p, default=str)[:40]}.")
    try:
        return np.asarray(raw, dtype=np.float64)
    except OverflowError:  # a JSON integer beyond float range
        raise LandmarkFormatError("A landmark coordinate is too large for a number; every point needs finite x and y "
                                  "on the canvas.") from None


def bounding_box(points: np.ndarray, visibility: np.ndarray | None = None) -> tuple[float, float, float, float]:
    pts = points if visibility is None or not np.any(visibility > 0) else points[visibility > 0]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def validate(face: FaceLandmarks) -> None:
    """Raise LandmarkFormatError unless the points are 68 finite pairs inside the canvas."""
    pts = face.points
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise LandmarkFormatError(f"Landmarks must be an array of shape (68, 2), got {tuple(pts.shape)}.")
    if pts.shape[0] != NUM_POINTS:
        raise LandmarkFormatError(f"Expected {NUM_POINTS} landmark points in iBUG-68 order, got {pts.shape[0]}.")
    bad = np.flatnonzero(~np.isfinite(pts).all(axis=1))
    if bad.size:
        raise LandmarkFormatError(f"Landmark points {bad.tolist()} are NaN or infinite; every point needs finite x and y.")
    if face.visibility.shape != (NUM_POINTS,) or not np.isfinite(face.visibility).all():
        raise LandmarkFormatError("'visibility' must hold 68 finite numbers (1 visible, 0 missing).")
    w, h = face.image_size
    if w < 1 or h < 1:
        raise LandmarkFormatError(f"Image size must be positive, got {w}x{h}.")
    if face.image_index < 0:
        raise LandmarkFormatError(f"image_index is {face.image_index}; it counts images in the batch from 0.")
    # Half a pixel of slack around the canvas for points on the edge.
    inside = (pts[:, 0] >= -0.5) & (pts[:, 0] <= w - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= h - 0.5)
    outside = np.flatnonzero(~inside & (face.visibility > 0))
    if outside.size:
        i = int(outside[0])
        raise LandmarkFormatError(
            f"{outside.size} visible landmark point(s) lie outside the {w}x{h} canvas, e.g. point {i} at "
            f"({pts[i, 0]:.1f}, {pts[i, 1]:.1f}). Clamp them, mark them invisible (visibility 0), or fix image_size."
        )


def clamp_to_canvas(face: FaceLandmarks) -> FaceLandmarks:
    w, h = face.image_size
    pts = face.points.copy()
    pts[:, 0] = pts[:, 0].clip(-0.5, w - 0.5)
    pts[:, 1] = pts[:, 1].clip(-0.5, h - 0.5)
    return face.with_points(pts)


def faces_to_json(faces: list[FaceLandmarks]) -> str:
    return json.dumps({"format": "ibug68", "faces": [f.to_dict() for f in faces]}, indent=1)


def faces_from_json(text: str, out_of_canvas: str = "error") -> list[FaceLandmarks]:
    """Parse our JSON (a {"faces": [...]} object, one face object, or a list of faces), within LIMITS."""
    if not isinstance(text, str):
        raise LandmarkFormatError(f"Landmark JSON must be text, got {type(text).__name__}.")
    if len(text) > LIMITS["json_chars"]:
        raise LandmarkFormatError(f"Landmark JSON is {len(text):,} characters; the limit is {LIMITS['json_chars']:,} "
                                  f"(about {LIMITS['faces']} faces). Split it or save fewer faces.")
    try:
        data = loads_bounded(text, LIMITS["json_depth"])
    except TooDeep as e:
        raise LandmarkFormatError(f"Landmark JSON nests brackets deeper than {e.limit} levels (at character "
                                  f"{e.position}); the format needs 4: {{\"faces\": [{{\"points\": [[x, y]]}}]}}.") from None
    except json.JSONDecodeError as e:
        raise LandmarkFormatError(f"Landmark JSON is malformed at line {e.lineno}, column {e.colno}: {e.msg}.") from None
    except (RecursionError, OverflowError, ValueError) as e:  # e.g. an integer of more than 4300 digits
        raise LandmarkFormatError(f"Landmark JSON cannot be read ({type(e).__name__}); write plain numbers.") from None
    if isinstance(data, dict) and "faces" in data:
        data = data["faces"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise LandmarkFormatError("Landmark JSON holds no face: expected {\"faces\": [{\"points\": [...], \"image_size\": [w, h]}]}.")
    if len(data) > LIMITS["faces"]:
        raise LandmarkFormatError(f"Landmark JSON holds {len(data)} faces; the limit is {LIMITS['faces']}.")
    faces = []
    for i, item in enumerate(data):
        try:
            faces.append(FaceLandmarks.from_dict(item, out_of_canvas))
        except LandmarkFormatError as e:
            raise LandmarkFormatError(f"Face {i}: {e}") from None
    return faces
