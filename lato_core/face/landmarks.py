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
        'hide' does that and marks them invisible."""
        if not isinstance(data, dict):
            raise LandmarkFormatError(f"Each face must be a JSON object with 'points' and 'image_size', got {type(data).__name__}.")
        if "points" not in data or "image_size" not in data:
            raise LandmarkFormatError("Landmark JSON needs 'points' (68 [x, y] pairs) and 'image_size' ([width, height]).")
        points = _as_points(data["points"])
        size = data["image_size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_number(v) and v >= 1 for v in size)):
            raise LandmarkFormatError(f"'image_size' must be [width, height] in pixels, got {size!r}.")
        visibility = data.get("visibility")
        if out_of_canvas in ("clamp", "hide"):
            limit = np.array([size[0] - 0.5, size[1] - 0.5])
            outside = ((points < -0.5) | (points > limit)).any(axis=1)
            points = points.clip(-0.5, limit)
            if out_of_canvas == "hide":
                visibility = np.where(outside, 0.0, np.ones(NUM_POINTS) if visibility is None else np.asarray(visibility, float))
        elif out_of_canvas != "error":
            raise LandmarkFormatError(f"Unknown out_of_canvas policy '{out_of_canvas}'; use error, clamp or hide.")
        return cls(
            points=points,
            image_size=(int(size[0]), int(size[1])),
            visibility=visibility,
            box=data.get("box"),
            score=float(data.get("score", 1.0)),
            backend=str(data.get("backend", "json")),
            image_index=int(data.get("image_index", 0)),
        )


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_points(raw) -> np.ndarray:
    if not isinstance(raw, (list, tuple, np.ndarray)):
        raise LandmarkFormatError(f"'points' must be a list of 68 [x, y] pairs, got {type(raw).__name__}.")
    if len(raw) != NUM_POINTS:
        raise LandmarkFormatError(f"Expected {NUM_POINTS} landmark points in iBUG-68 order, got {len(raw)}.")
    for i, p in enumerate(raw):
        if not (isinstance(p, (list, tuple, np.ndarray)) and len(p) == 2 and all(_is_number(v) or isinstance(v, np.floating) for v in p)):
            raise LandmarkFormatError(f"Point {i} must be a pair of numbers [x, y], got {p!r}.")
    return np.asarray(raw, dtype=np.float64)


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
    """Parse our JSON (a {"faces": [...]} object, one face object, or a list of faces)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LandmarkFormatError(f"Landmark JSON is malformed at line {e.lineno}, column {e.colno}: {e.msg}.") from None
    if isinstance(data, dict) and "faces" in data:
        data = data["faces"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise LandmarkFormatError("Landmark JSON holds no face: expected {\"faces\": [{\"points\": [...], \"image_size\": [w, h]}]}.")
    faces = []
    for i, item in enumerate(data):
        try:
            faces.append(FaceLandmarks.from_dict(item, out_of_canvas))
        except LandmarkFormatError as e:
            raise LandmarkFormatError(f"Face {i}: {e}") from None
    return faces
