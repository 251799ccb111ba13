"""Expression and head pose of a reference face (B) retargeted onto a source face (A): the cross-identity case.

Both faces are fitted with the 3D face (geometry.fit_face, the pose from points no expression moves) and
lifted into the canonical frame, where size (inter-ocular distance = 1) and head pose are removed. A's lifted
shape is then deformed, part by part, by what B's expression does, never replaced by B's points:

- eyes: each eye's opening as a ratio (lid gap / eye width) of B is given to A's eye of the same side;
  A's lids move, A's eye corners stay.
- mouth: the inner lip gap (in IOD) of B is given to A by a jaw drop on A's own lips and chin; the lip
  shape (smile, frown, sneer...) is projected on the model's named expression offsets, restricted to
  the lips and centred, and the difference B - A of those coefficients is added to A's lips.
- brows: the same projection on brow raise / lower-knit / inner-raise patterns, relative to each face's
  identity baseline (model mean plus its fitted shape coefficients).
- pose: B's yaw, pitch and roll; A keeps its own scale and head position on its canvas.

strength interpolates every change (0 returns A, 1 gives B's values, more exaggerates). The eye corners,
nose and the rest of A's face are never moved except by the head turn: A's rigid distances stay A's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FaceEditError
from ..face.landmarks import FaceLandmarks
from .face_model import FaceModel3D, load_face_model
from .geometry import LIMITS, FaceFit, contour_sliding, facing_viewer, fit_face, project, rotation_matrix

BROWS = np.arange(17, 27)
LIPS = np.arange(48, 68)
EYES = {"right": (36, 39, ((37, 41), (38, 40))), "left": (42, 45, ((43, 47), (44, 46)))}  # corners, lid pairs
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
UPPER_LID_SHARE = 0.75   # of an eye's opening change, the upper lid takes this much (as geometry's blink)
RIDGE = 0.02             # keeps the expression coefficients small where the patterns overlap
MOUTH_EXPRESSIONS = ("happy", "sad", "angry", "surprised", "fearful", "disgusted")
# Points that expressions do not move: the head pose is fitted on these alone (upper jaw line, nose, eye
# corners), so a wide-open mouth or raised brows of B do not tilt the pose that A is given.
RIGID_POINTS = np.r_[0:4, 13:17, 27:36, 36, 39, 42, 45]


@dataclass
class RetargetParts:
    eyes: bool = True
    brows: bool = True
    mouth: bool = True
    pose: bool = True


@dataclass
class FaceMeasures:
    """What is carried, measured on one lifted face: pose in degrees, openings as ratios."""
    yaw: float
    pitch: float
    roll: float
    eye_openness: dict          # side -> lid gap / eye width
    mouth_gap: float            # inner lip gap (62 to 66) in inter-ocular distances
    brow_coefficients: np.ndarray
    mouth_coefficients: np.ndarray

    def as_dict(self) -> dict:
        return {"yaw": round(self.yaw, 2), "pitch": round(self.pitch, 2), "roll": round(self.roll, 2),
                "eye_openness": {k: round(v, 4) for k, v in self.eye_openness.items()},
                "mouth_gap_iod": round(self.mouth_gap, 4),
                "brow_coefficients": np.round(self.brow_coefficients, 3).tolist(),
                "mouth_coefficients": np.round(self.mouth_coefficients, 3).tolist()}


def eye_openness(shape: np.ndarray) -> dict:
    """side -> mean vertical lid gap / corner-to-corner width, on a canonical (y up) or image-flipped shape."""
    out = {}
    for side, (c0, c1, pairs) in EYES.items():
        width = float(np.linalg.norm(shape[c1, :2] - shape[c0, :2]))
        gap = np.mean([abs(shape[u, 1] - shape[lo, 1]) for u, lo in pairs])
        out[side] = float(gap / max(width, 1e-9))
    return out


def mouth_gap(shape: np.ndarray) -> float:
    """Inner lip gap at the centre, canonical frame (y up): positive when the mouth is open."""
    return float(max(shape[62, 1] - shape[66, 1], 0.0))


def _brow_basis(model: FaceModel3D) -> np.ndarray:
    """(3, 10, 3): raise, lower-and-knit, and sadness's inner raise, on the brow points."""
    patterns = [model.brow_offsets(1.0), model.brow_offsets(-1.0), model.expression_offsets({"sad": 1.0})]
    return np.stack([p[BROWS] for p in patterns])


def _mouth_basis(model: FaceModel3D) -> np.ndarray:
    """(7, 20, 3): the jaw drop (its coefficient is discarded: the gap is carried exactly instead) and each
    expression's lip offsets, all centred on the lips so a mouth placed lower or higher counts for nothing."""
    patterns = [model.jaw_drop()] + [model.expression_offsets({e: 1.0}) for e in MOUTH_EXPRESSIONS]
    lips = np.stack([p[LIPS] for p in patterns])
    return lips - lips.mean(axis=1, keepdims=True)


def _project(offset: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Ridge least squares coefficients of `offset` (N, 3) on basis (K, N, 3)."""
    a = basis.reshape(len(basis), -1).T
    return np.linalg.solve(a.T @ a + RIDGE * np.trace(a.T @ a) / len(basis) * np.eye(len(basis)),
                           a.T @ offset.ravel())


def identity_baseline(fit: FaceFit, model: FaceModel3D) -> np.ndarray:
    """The model's neutral face with this person's fitted shape coefficients (the mean face for 'fallback')."""
    if len(fit.coefficients) and len(model.shape_basis):
        return model.mean + np.tensordot(fit.coefficients, model.shape_basis, axes=1)
    return model.mean


def rigid_fit(face: FaceLandmarks, model: FaceModel3D) -> FaceFit:
    """fit_face with the pose taken from RIGID_POINTS only; the lifted shape still holds all 68 points."""
    mask = np.zeros(68)
    mask[RIGID_POINTS] = 1.0
    return fit_face(face.with_points(face.points, visibility=face.visibility * mask), model)


def measure(fit: FaceFit, model: FaceModel3D) -> FaceMeasures:
    baseline = identity_baseline(fit, model)
    lips = fit.shape[LIPS] - baseline[LIPS]
    return FaceMeasures(fit.yaw, fit.pitch, fit.roll, eye_openness(fit.shape), mouth_gap(fit.shape),
                        _project(fit.shape[BROWS] - baseline[BROWS], _brow_basis(model)),
                        _project(lips - lips.mean(axis=0), _mouth_basis(model)))


def _set_eyes(shape: np.ndarray, target: dict, strength: float) -> np.ndarray:
    out = shape.copy()
    for side, (c0, c1, pairs) in EYES.items():
        width = float(np.linalg.norm(shape[c1, :2] - shape[c0, :2]))
        now = eye_openness(shape)[side] * width
        change = strength * (target[side] * width - now)
        for upper, lower in pairs:
            gap = shape[upper, 1] - shape[lower, 1]
            new_gap = max(gap + change, 0.0)
            out[upper, 1] += UPPER_LID_SHARE * (new_gap - gap)
            out[lower, 1] -= (1 - UPPER_LID_SHARE) * (new_gap - gap)
    return out


def _set_mouth(shape: np.ndarray, a: FaceMeasures, b: FaceMeasures, strength: float, model) -> np.ndarray:
    basis = _mouth_basis(model)
    delta = strength * (b.mouth_coefficients - a.mouth_coefficients)
    delta[0] = 0.0  # the opening is set exactly below
    out = shape.copy()
    out[LIPS] += np.tensordot(delta, basis, axes=1)
    wanted = a.mouth_gap + strength * (b.mouth_gap - a.mouth_gap)
    out += (wanted - (out[62, 1] - out[66, 1])) * model.jaw_drop()  # jaw drop 1 opens the centre gap by 1
    for upper, lower in INNER_LIP_PAIRS:  # a closing mouth never pushes the lower lip through the upper
        out[lower, 1] = min(out[lower, 1], out[upper, 1])
    return out


def _pose(a: FaceMeasures, b: FaceMeasures, strength: float, parts: RetargetParts) -> list[float]:
    if not parts.pose:
        return [a.yaw, a.pitch, a.roll]
    return [float(np.clip(getattr(a, k) + strength * (getattr(b, k) - getattr(a, k)), -LIMITS[k], LIMITS[k]))
            for k in ("yaw", "pitch", "roll")]


def retarget_expression(source: FaceLandmarks, reference: FaceLandmarks, strength: float = 1.0,
                        parts: RetargetParts | None = None, model: FaceModel3D | None = None
                        ) -> tuple[FaceLandmarks, dict]:
    """Target landmarks on the source's canvas: the source face (A) with the reference's (B) expression
    and pose; and a report of both faces' measures."""
    parts = parts or RetargetParts()
    if not np.isfinite(strength) or not 0.0 <= strength <= 2.0:
        raise FaceEditError(f"strength is {strength}; use 0 (no change) to 1 (the reference's values), at most 2.")
    model = model or load_face_model()
    fit_a = rigid_fit(source, model)
    try:
        fit_b = rigid_fit(reference, model)
    except FaceEditError as e:
        raise FaceEditError(f"Reference face: {e}") from None
    a, b = measure(fit_a, model), measure(fit_b, model)

    shape = fit_a.shape.copy()
    if parts.brows:
        shape[BROWS] += strength * np.tensordot(b.brow_coefficients - a.brow_coefficients, _brow_basis(model), axes=1)
    if parts.mouth:
        shape = _set_mouth(shape, a, b, strength, model)
    if parts.eyes:
        shape = _set_eyes(shape, b.eye_openness, strength)
    rotation = rotation_matrix(*_pose(a, b, strength, parts))
    points = project(shape + contour_sliding(model, rotation)[0], rotation, fit_a.scale, fit_a.translation)

    visibility = np.clip(source.visibility, 0, 1).copy()
    was_facing, facing = facing_viewer(model, fit_a.rotation), facing_viewer(model, rotation)
    visibility[facing & ~was_facing & (visibility == 0)] = 1.0  # turned into view
    visibility[~facing & was_facing] = 0.0                       # turned away
    w, h = source.image_size
    limit = np.array([w - 0.5, h - 0.5])
    visibility *= ((points >= -0.5) & (points <= limit)).all(axis=1)
    target = source.with_points(points.clip(-0.5, limit), visibility=visibility, backend="retarget")
    return target, {"source": a.as_dict(), "reference": b.as_dict(), "strength": strength, "parts": vars(parts)}
