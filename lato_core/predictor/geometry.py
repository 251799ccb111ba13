"""Move 68 landmarks to a requested head pose and expression through a fitted 3D face.

1. fit_face: weak-perspective camera (yaw, pitch, roll, scale, translation) + a few BFM shape coefficients
   fitted to the visible source points (Levenberg-Marquardt; brows and mouth down-weighted, they move
   with expression). Jaw points are silhouette points, as detectors report them: under yaw each one
   slides along a super-elliptic horizontal cross-section of the face (forward on the far side, back toward
   the ear on the near side) to where the surface is edge-on to the viewer.
2. Lift: the fit residual is moved into the canonical frame (zero depth in the current camera), so the
   lifted shape reproduces the source exactly; this residual is the subject's identity and rotates with
   the head.
3. Edit: expression offsets (canonical frame, IOD units, so they scale with face size) are added; blink
   and mouth closing act on the subject's own eyelid and lip gaps. The target pose is the current pose
   plus the requested angles (Euler angles add; axes listed in params.frontal restart from 0).
4. Project; points whose surface turns away from the viewer, or that fall off the canvas, get
   visibility 0 and are clamped onto it.

Angles are degrees; positive yaw turns the head toward the subject's OWN left, positive pitch raises
the chin (looks up), positive roll tilts the crown toward the subject's own left shoulder. The head turns
about the pivot (midway between the ears); keep_centre=True instead keeps the landmarks' centroid still.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FaceEditError
from ..face.landmarks import FaceLandmarks
from .expression_blend import expression_basis, keep_signatures, neutralised
from .face_model import CONTOUR_EXPONENT, FaceModel3D, load_face_model

LIMITS = {"yaw": 90.0, "pitch": 70.0, "roll": 60.0}  # target pose is clipped to +-these
MOUTH_OPEN_IOD = 0.45     # jaw drop at mouth_open = 1
EYE_WIDEN_IOD = 0.05      # upper lid lift at blink = -1
FACING_LIMIT = -0.1       # a point is hidden once its normal points this far away from the viewer
LANDMARK_NOISE_IOD = 0.03  # expected landmark error, balances the data term against the shape prior

_FIT_WEIGHTS = np.ones(68)
_FIT_WEIGHTS[0:17] = 0.5   # jaw line: the least precise detector points
_FIT_WEIGHTS[17:27] = 0.6  # brows move with expression
_FIT_WEIGHTS[48:68] = 0.5  # mouth moves with expression
_EYELID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))
_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Canonical frame -> camera frame (x right, y up, z toward the viewer); R = Rz(-roll) Ry(yaw) Rx(-pitch)."""
    a, b, c = np.radians([yaw, -pitch, -roll])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def euler_angles(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation made by rotation_matrix."""
    yaw = np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = -np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    roll = -np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return float(yaw), float(pitch), float(roll)


def project(shape: np.ndarray, rotation: np.ndarray, scale: float, translation: np.ndarray) -> np.ndarray:
    """Canonical (N, 3) -> image pixels (N, 2), y down; translation is the pivot's pixel position."""
    cam = scale * shape @ rotation.T
    return np.column_stack([cam[:, 0] + translation[0], translation[1] - cam[:, 1]])


_CONTOUR_RANGE = (-0.7, 0.95)  # how far (in units of the depth) a jaw point may slide back / forward


def contour_sliding(model: FaceModel3D, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical offsets (68, 3) moving the jaw points from their frontal silhouette to the silhouette seen
    under `rotation` (zero for other points), and the outward normals (17, 3) there.

    Each jaw point i lies on the super-ellipse |x/a|^n + |(z - z_i)/b|^n = 1 (a its half-width, b the
    model's contour_depth); the silhouette maximises the support function along the in-plane direction
    perpendicular to the view, which has the closed form below."""
    n = CONTOUR_EXPONENT
    jaw = model.mean[:17]
    side = np.sign(jaw[:, 0])
    side[8] = 0.0
    a, b = np.maximum(np.abs(jaw[:, 0]), 1e-6), model.contour_depth
    view = rotation[2]                          # toward the viewer, in canonical coordinates
    c1, c2 = a * max(view[2], 1e-6), -side * b * view[0]
    m = n / (n - 1)
    norm = (np.abs(c1) ** m + np.abs(c2) ** m) ** (1 / m)
    z = np.clip(np.sign(c2) * (np.abs(c2) / norm) ** (1 / (n - 1)), *_CONTOUR_RANGE)
    x = (1 - np.abs(z) ** n) ** (1 / n)
    offsets = np.zeros((68, 3))
    offsets[:17, 0] = side * a * (x - 1.0)
    offsets[:17, 2] = b * z
    normals = np.column_stack([side * x ** (n - 1) / a, np.zeros(17), np.sign(z) * np.abs(z) ** (n - 1) / b])
    normals[8] = model.normals[8]
    return offsets, normals / np.linalg.norm(normals, axis=1, keepdims=True)


@dataclass
class FaceFit:
    yaw: float
    pitch: float
    roll: float
    scale: float               # pixels per inter-ocular distance
    translation: np.ndarray    # pivot position in pixels
    coefficients: np.ndarray   # shape coefficients (N(0, 1) prior)
    shape: np.ndarray          # (68, 3) lifted canonical shape, jaw unslid (as seen frontally)
    rms: float                 # weighted fit residual in IOD, before lifting

    @property
    def rotation(self) -> np.ndarray:
        return rotation_matrix(self.yaw, self.pitch, self.roll)


def _initial_pose(model: FaceModel3D, q: np.ndarray, w: np.ndarray):
    """Weighted affine camera, then the nearest scaled rotation."""
    design = np.column_stack([model.mean, np.ones(68)]) * np.sqrt(w)[:, None]
    q_up = np.column_stack([q[:, 0], -q[:, 1]]) * np.sqrt(w)[:, None]
    affine = np.linalg.lstsq(design, q_up, rcond=None)[0][:3].T
    u, sigma, vt = np.linalg.svd(affine, full_matrices=False)
    r2 = u @ vt
    rotation = np.vstack([r2, np.cross(r2[0], r2[1])])
    scale = float(sigma.mean())
    guess = project(model.mean, rotation, scale, np.zeros(2))
    translation = ((q - guess) * w[:, None]).sum(0) / w.sum()
    return euler_angles(rotation), scale, translation


EXPRESSION_PRIOR = 0.3  # weight of the N(0, 1) prior on expression coefficients in an expression-aware fit


def fit_face(face: FaceLandmarks, model: FaceModel3D | None = None, iterations: int = 30,
             expression: bool = False) -> FaceFit:
    """Pose, scale, shape and the lifted 3D shape of `face` (visible points only; model defaults to auto).
    expression=True also fits the expression offsets (expression_blend.expression_basis) so that an open
    mouth or a smile does not bend the pose and scale; the neutral target uses it."""
    model = model or load_face_model()
    q = face.points
    w = _FIT_WEIGHTS * np.clip(face.visibility, 0, 1)
    if np.count_nonzero(w[17:48] > 0) < 6:
        raise FaceEditError("Too few visible eye, brow and nose landmarks to estimate the head pose; "
                            "use a photo where the face is visible, or landmarks with visibility set.")
    angles, s0, t0 = _initial_pose(model, q, w)
    k = model.shape_basis.shape[0]
    extra = expression_basis(model).reshape(-1, 68, 3) if expression else np.zeros((0, 68, 3))
    basis = np.concatenate([model.shape_basis, extra])
    prior = np.r_[np.ones(k), np.full(len(extra), EXPRESSION_PRIOR)]
    sqrt_w = np.sqrt(w)[:, None]

    def unpack(p):
        shape = model.mean + np.tensordot(p[6:], basis, axes=1) if len(basis) else model.mean
        rotation = rotation_matrix(*np.degrees(p[:3]))
        return rotation, np.exp(p[3]) * s0, p[4:6] * s0, shape + contour_sliding(model, rotation)[0]

    def residuals(p):
        rotation, scale, translation, shape = unpack(p)
        data = (project(shape, rotation, scale, translation) - q) * sqrt_w / (s0 * LANDMARK_NOISE_IOD)
        return np.concatenate([data.ravel(), p[6:] * prior])

    p = np.concatenate([np.radians(angles), [0.0], t0 / s0, np.zeros(len(basis))])
    damping, r = 1e-3, residuals(p)
    for _ in range(iterations):
        jac = np.empty((r.size, p.size))
        for j in range(p.size):
            step = np.zeros_like(p)
            step[j] = 1e-6
            jac[:, j] = (residuals(p + step) - residuals(p - step)) / 2e-6
        hess, grad = jac.T @ jac, jac.T @ r
        while True:
            delta = -np.linalg.solve(hess + damping * np.diag(np.diag(hess) + 1e-9), grad)
            r_new = residuals(p + delta)
            if r_new @ r_new < r @ r:
                p, r, damping = p + delta, r_new, damping / 3
                break
            damping *= 4
            if damping > 1e8:
                break
        if damping > 1e8 or np.abs(delta).max() < 1e-9:
            break

    rotation, scale, translation, shape = unpack(p)
    residual = q - project(shape, rotation, scale, translation)
    rms = float(np.sqrt((residual ** 2 * w[:, None]).sum() / w.sum()) / scale)
    # Lift: the image-plane residual becomes a canonical offset with no depth in the current camera.
    lifted = shape + np.column_stack([residual[:, 0], -residual[:, 1], np.zeros(68)]) / scale @ rotation
    lifted -= contour_sliding(model, rotation)[0]
    yaw, pitch, roll = euler_angles(rotation)
    return FaceFit(yaw, pitch, roll, float(scale), translation, p[6:6 + k].copy(), lifted, rms)


def estimate_pose(face: FaceLandmarks, model: FaceModel3D | None = None) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees, conventions as in the module docstring."""
    fit = fit_face(face, model)
    return fit.yaw, fit.pitch, fit.roll


def _target_angle(axis: str, current: float, params, warnings: list[str] | None = None) -> float:
    delta = float(getattr(params, axis))
    if axis in params.frontal:
        current = 0.0
    elif delta == 0:
        return current  # untouched axes keep the source pose exactly, even beyond the limits
    target = float(np.clip(current + delta, -LIMITS[axis], LIMITS[axis]))
    if warnings is not None and abs(target - (current + delta)) > 0.5:
        warnings.append(f"The face's {axis} is {current:.0f} degrees; {delta:+.0f} more would pass the {LIMITS[axis]:.0f} "
                        f"degree limit, so the target {axis} is {target:.0f} (a change of {target - current:+.0f}).")
    return target


def _close_gaps(shape: np.ndarray, pairs, amount: float, upper_share: float) -> np.ndarray:
    """Move each (upper, lower) pair toward each other by `amount` (0..1) of its vertical gap."""
    out = shape.copy()
    for upper, lower in pairs:
        gap = max(shape[upper, 1] - shape[lower, 1], 0.0)
        out[upper, 1] -= amount * upper_share * gap
        out[lower, 1] += amount * (1 - upper_share) * gap
    return out


def identity_shape(fit: FaceFit, model: FaceModel3D) -> np.ndarray:
    """The part of the lifted shape the identity model explains (mean + shape coefficients)."""
    k = model.shape_basis.shape[0]
    return model.mean + (np.tensordot(fit.coefficients, model.shape_basis, axes=1) if k else 0.0)


def edited_shape(shape: np.ndarray, params, model: FaceModel3D, identity: np.ndarray | None = None,
                 warnings: list[str] | None = None) -> np.ndarray:
    """Canonical shape with the neutral, expression, brow, mouth and eyelid edits of params applied.
    'neutral' (0..1) first removes the subject's own expression (identity: see identity_shape; the model's
    mean when None); the other expressions are then added with their signatures kept (expression_blend)."""
    amounts = params.expression_amounts()
    neutral = amounts.pop("neutral", 0.0)
    out = neutralised(shape, model.mean if identity is None else identity, model, neutral) if neutral > 0 else shape
    offsets = model.expression_offsets(amounts) + model.brow_offsets(params.brow_raise)
    if params.mouth_open > 0:
        offsets = offsets + params.mouth_open * MOUTH_OPEN_IOD * model.jaw_drop()
    owners = {name: a for name, a in amounts.items() if a > 0}
    owners["brow_raise" if params.brow_raise > 0 else "brow_lower"] = abs(params.brow_raise)
    out = out + keep_signatures(offsets, owners, model, warnings)
    if params.mouth_open < 0:  # raise the jaw by the centre gap, then meet the lips at the sides
        amount = min(-params.mouth_open, 1.0)
        out = out - amount * max(out[62, 1] - out[66, 1], 0.0) * model.jaw_drop()
        out = _close_gaps(out, _LIP_PAIRS, amount, upper_share=0.0)
    if params.blink > 0:
        out = _close_gaps(out, _EYELID_PAIRS, min(params.blink, 1.0), upper_share=0.75)
    elif params.blink < 0:
        widen = min(-params.blink, 1.0) * EYE_WIDEN_IOD
        out[[37, 38, 43, 44], 1] += widen
        out[[40, 41, 46, 47], 1] -= 0.3 * widen
    return out


def facing_viewer(model: FaceModel3D, rotation: np.ndarray) -> np.ndarray:
    normals = model.normals.copy()
    normals[:17] = contour_sliding(model, rotation)[1]
    return normals @ rotation[2] > FACING_LIMIT


def predict_landmarks(face: FaceLandmarks, params, model: FaceModel3D | None = None,
                      keep_centre: bool = False, warnings: list[str] | None = None) -> FaceLandmarks:
    """Landmarks of `face` after the edit in params (an EditParams), on the same canvas. Pose limits
    reached and expressions that pull one feature opposite ways are appended to `warnings`."""
    model = model or load_face_model()
    fit = fit_face(face, model, expression=params.expression_amounts().get("neutral", 0.0) > 0)
    pose = [_target_angle(axis, getattr(fit, axis), params, warnings) for axis in ("yaw", "pitch", "roll")]
    rotation = rotation_matrix(*pose)
    shape = edited_shape(fit.shape, params, model, identity_shape(fit, model), warnings)
    shape = shape + contour_sliding(model, rotation)[0]
    points = project(shape, rotation, fit.scale, fit.translation)
    if keep_centre:
        points += face.points.mean(axis=0) - points.mean(axis=0)

    # Visibility changes only where a point turns away (0) or turns into view (1 unless the source had a
    # value for it); occlusions the source reported elsewhere are kept.
    visibility = np.clip(face.visibility, 0, 1).copy()
    was_facing, facing = facing_viewer(model, fit.rotation), facing_viewer(model, rotation)
    visibility[facing & ~was_facing & (visibility == 0)] = 1.0
    visibility[~facing & was_facing] = 0.0
    w, h = face.image_size
    limit = np.array([w - 0.5, h - 0.5])
    visibility *= ((points >= -0.5) & (points <= limit)).all(axis=1)
    return face.with_points(points.clip(-0.5, limit), visibility=visibility, backend="parametric")


def synthetic_face(model: FaceModel3D | None = None, yaw=0.0, pitch=0.0, roll=0.0, scale=100.0,
                   centre=(256.0, 256.0), image_size=(512, 512)) -> FaceLandmarks:
    """The model's mean face at a pose, `scale` pixels per IOD, landmark centroid at `centre`."""
    model = model or load_face_model()
    rotation = rotation_matrix(yaw, pitch, roll)
    points = project(model.mean + contour_sliding(model, rotation)[0], rotation, scale, np.zeros(2))
    points += np.asarray(centre, float) - points.mean(axis=0)
    return FaceLandmarks(points, image_size, visibility=facing_viewer(model, rotation).astype(float),
                         backend="synthetic")
