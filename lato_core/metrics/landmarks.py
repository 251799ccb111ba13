"""Landmark error as in the LaTo paper's Table 3: landmarks detected on the edited image against the
target landmarks the edit was asked to follow.

landmark_error = mean over points visible in both sets of the per-point L1 distance |dx| + |dy|, in
pixels of the 512 canvas (crops of another size are rescaled). numpy's abs(a - b).mean() convention
(per coordinate) is exactly half of it; the mean Euclidean distance is reported alongside.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import FaceEditError
from ..face.detect import DetectOptions, detect_faces
from ..face.landmarks import FaceLandmarks

CANVAS = 512


@dataclass
class LandmarkDistance:
    """How far detected landmarks are from the targets (a measurement, not an exception)."""
    l1: float | None              # mean |dx| + |dy| per point, 512-canvas pixels (None: no face found)
    euclidean: float | None       # mean sqrt(dx^2 + dy^2) per point
    max_l1: float | None
    points: int                   # points visible in both sets
    detected: FaceLandmarks | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"landmark_error": self.l1, "landmark_error_euclidean": self.euclidean,
                "landmark_error_max": self.max_l1, "landmark_points": self.points,
                "face_found": self.detected is not None,
                "landmark_detector": self.detected.backend if self.detected is not None else None}


def landmark_error(detected: FaceLandmarks, target: FaceLandmarks) -> LandmarkDistance:
    """Compare two landmark sets on the same canvas (points hidden in either set are left out)."""
    if detected.image_size != target.image_size:
        raise FaceEditError(f"Landmarks on different canvases: {detected.image_size} vs {target.image_size}; "
                            "detect on the edited crop and give the target in crop space.")
    both = (detected.visibility > 0) & (target.visibility > 0)
    if not both.any():
        raise FaceEditError("No landmark is visible in both sets; the landmark error is undefined.")
    scale = CANVAS / max(target.image_size)
    delta = (detected.points[both] - target.points[both]) * scale
    l1 = np.abs(delta).sum(axis=1)
    return LandmarkDistance(float(l1.mean()), float(np.linalg.norm(delta, axis=1).mean()), float(l1.max()),
                         int(both.sum()), detected)


def _overlap(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / max(union, 1e-9)


def detect_matching_face(image, target: FaceLandmarks, options: DetectOptions | None = None) -> FaceLandmarks | None:
    """The face detected in `image` (H, W, C) whose landmark box overlaps the target's most; None if none does."""
    faces = detect_faces(image, options)
    scored = [(_overlap(_points_box(f), _points_box(target)), f) for f in faces]
    scored = [item for item in scored if item[0] > 0]
    return max(scored, key=lambda item: item[0])[1] if scored else None


def _points_box(face: FaceLandmarks):
    pts = face.points[face.visibility > 0] if np.any(face.visibility > 0) else face.points
    return (*pts.min(axis=0), *pts.max(axis=0))


def measure_landmark_error(edited_image, target: FaceLandmarks, options: DetectOptions | None = None) -> LandmarkDistance:
    """Detect landmarks on the edited image (H, W, C) and compare them to the target on the same canvas.

    The detector's score threshold is not applied (overlap with the target's box picks the face); when
    dlib's HOG finds nothing, as on heads turned ~30 degrees, dlib's CNN detector (same 68-point model,
    seconds on a CPU) tries again."""
    if edited_image.ndim == 4:
        edited_image = edited_image[0]
    height, width = int(edited_image.shape[0]), int(edited_image.shape[1])
    if (width, height) != tuple(target.image_size):
        raise FaceEditError(f"The edited image is {width}x{height} but the target landmarks are on a "
                            f"{target.image_size[0]}x{target.image_size[1]} canvas; give crop-space targets.")
    options = replace(options or DetectOptions(), min_score=0.0)
    found = detect_matching_face(edited_image, target, options)
    if found is None and options.backend == "dlib_hog":
        found = detect_matching_face(edited_image, target, replace(options, backend="dlib_cnn"))
    if found is None:
        return LandmarkDistance(None, None, None, 0, None)
    return landmark_error(found, target)
