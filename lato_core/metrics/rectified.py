"""The rectified identity score of the LaTo paper's Eq. 7 and the edit amplitudes it compares.

    s_rip = max(0, s_id - ((phi_ins - phi_real) / (phi_ins + eps))^2)

s_id: identity similarity (ArcFace cosine, or the dlib similarity 1 - d / 1.2).
phi_real, the actual amplitude: 1 - SSIM(source crop, edited crop), as in the paper.
phi_ins, the expected amplitude, on the same 1 - SSIM scale, from the predictor's parameters:

    u       = sum over poses  c_axis * (|angle| / 15 deg)^0.4
            + sum over others c_k * |amount|^0.7            (expressions, mouth_open, blink, brow_raise)
    phi_ins = phi_max * (1 - exp(-u))

SSIM saturates: once features move by a few pixels it stops falling much. phi_max is that ceiling for
the source photo, measured as 1 - SSIM(source, source shifted by 16 px diagonally), since textured photos
fall further (0.53 for the astronaut crop, 0.71 for Grace Hopper); 0.6 without a source image. The
constants were fitted to the landmark-warp preview of each edit on both shipped photos, where
u = -ln(1 - phi_real / phi_max) came out alike for the two (e.g. 1.04 for 'surprised' on both).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..face.landmarks import FaceLandmarks
from .image import ssim

POSE_UNITS = {"yaw": 1.7, "pitch": 1.45, "roll": 1.9}   # u at 15 degrees
POSE_POWER = 0.4
OTHER_UNITS = {"happy": 0.27, "sad": 0.35, "surprised": 1.04, "angry": 0.36, "fearful": 0.68,
               "disgusted": 0.21, "neutral": 0.0, "mouth_open": 0.3, "blink": 0.32, "brow_raise": 0.46}
OTHER_POWER = 0.7
DEFAULT_CEILING = 0.6
CEILING_SHIFT = 16
EPS = 1e-6  # Eq. 7's epsilon: only guards the division, so a requested no-op rewards only an unchanged image


def edit_magnitude(params: dict) -> float:
    """u >= 0 of predictor parameters (a report's "params": degrees, expression amounts, slider values)."""
    u = sum(c * (abs(float(params.get(axis, 0.0) or 0.0)) / 15.0) ** POSE_POWER for axis, c in POSE_UNITS.items())
    expressions = params.get("expressions") or {}
    scale = float(params.get("intensity", 1.0) or 1.0)  # reports from the sliders path already hold intensity 1
    for name, amount in expressions.items():
        u += OTHER_UNITS.get(name, 0.5) * abs(float(amount) * scale) ** OTHER_POWER
    for name in ("mouth_open", "blink", "brow_raise"):
        u += OTHER_UNITS[name] * abs(float(params.get(name, 0.0) or 0.0)) ** OTHER_POWER
    return float(u)


def amplitude_ceiling(source) -> float:
    """phi_max of a source crop (H, W, C): 1 - SSIM against itself shifted by 16 px down and right."""
    image = source.detach().cpu().numpy() if torch.is_tensor(source) else np.asarray(source)
    image = image[0] if image.ndim == 4 else image
    s = CEILING_SHIFT
    return 1.0 - ssim(image[s:, s:], image[:-s, :-s])


def expected_amplitude(params: dict, ceiling: float = DEFAULT_CEILING) -> float:
    """phi_ins of the requested edit on the 1 - SSIM scale."""
    return float(ceiling * (1.0 - math.exp(-edit_magnitude(params))))


def actual_amplitude(ssim_value: float) -> float:
    """phi_real = 1 - SSIM(source, edit)."""
    return float(1.0 - ssim_value)


def rectified_identity(similarity: float, expected: float, actual: float, eps: float = EPS) -> float:
    """Eq. 7: identity similarity minus the squared relative gap of the amplitudes, floored at 0."""
    gap = (expected - actual) / (expected + eps)
    return float(max(0.0, similarity - gap * gap))


def params_from_landmarks(source: FaceLandmarks, target: FaceLandmarks) -> dict:
    """Pose-only parameters (yaw, pitch, roll change) when no predictor report is at hand."""
    from ..predictor.geometry import estimate_pose

    before, after = estimate_pose(source), estimate_pose(target)
    return {axis: after[i] - before[i] for i, axis in enumerate(("yaw", "pitch", "roll"))}
