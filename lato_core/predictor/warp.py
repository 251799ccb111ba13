"""Instant edit preview: warp the face crop so its landmarks move to the target landmarks.

Method: a thin-plate spline (TPS) mapping each output pixel back to where it comes from in the source
crop, with the crop border pinned by fixed anchor points. Chosen over a piecewise-affine warp because a
TPS is smooth everywhere (no creases along triangle edges on skin) and over moving least squares because
it is exact at the landmarks and needs one small linear solve rather than one per pixel. A TPS can fold
when target points cross; `smoothing` relaxes exactness to keep such fields tame. The field is solved on
the landmarks, evaluated on a coarse grid and upsampled bilinearly: it is smooth, so this costs nothing
in accuracy and keeps the warp in milliseconds on a CPU.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FaceEditError
from ..face.landmarks import FaceLandmarks

ANCHORS_PER_SIDE = 8
FIELD_STRIDE = 4


def _kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """TPS radial basis U(r) = r^2 log r^2 between point sets (N, 2) and (M, 2)."""
    r2 = torch.cdist(a, b).square()
    return torch.where(r2 > 0, r2 * torch.log(r2.clamp_min(1e-12)), torch.zeros_like(r2))


def fit_tps(control: torch.Tensor, values: torch.Tensor, smoothing: float = 0.0):
    """Weights of a TPS f with f(control_i) ~ values_i (exact when smoothing is 0). Coordinates in 0..1."""
    n = control.shape[0]
    k = _kernel(control, control) + smoothing * torch.eye(n, dtype=control.dtype)
    p = torch.cat([torch.ones(n, 1, dtype=control.dtype), control], dim=1)
    system = torch.zeros(n + 3, n + 3, dtype=control.dtype)
    system[:n, :n], system[:n, n:], system[n:, :n] = k, p, p.T
    rhs = torch.cat([values, torch.zeros(3, values.shape[1], dtype=values.dtype)])
    return control, torch.linalg.solve(system, rhs)


def eval_tps(tps, points: torch.Tensor) -> torch.Tensor:
    control, coef = tps
    n = control.shape[0]
    basis = torch.cat([_kernel(points, control), torch.ones(points.shape[0], 1, dtype=points.dtype), points], dim=1)
    return basis @ coef[: n + 3]


def border_anchors(size: int, per_side: int = ANCHORS_PER_SIDE) -> np.ndarray:
    edge = np.linspace(0, size - 1, per_side)
    top = np.stack([edge, np.zeros_like(edge)], 1)
    return np.unique(np.concatenate([top, top[:, ::-1], top + [0, size - 1], top[:, ::-1] + [size - 1, 0]]), axis=0)


def warp_field(source: np.ndarray, target: np.ndarray, size: int, smoothing: float = 0.0) -> torch.Tensor:
    """(size, size, 2) source-pixel coordinates to sample for each output pixel of a size x size crop."""
    anchors = border_anchors(size)
    scale = float(size - 1)
    ctrl = torch.from_numpy(np.concatenate([target, anchors]) / scale)
    vals = torch.from_numpy(np.concatenate([source, anchors]) / scale)
    tps = fit_tps(ctrl.double(), vals.double(), smoothing)
    coarse = (size - 1) // FIELD_STRIDE + 2
    axis = torch.linspace(0, (coarse - 1) * FIELD_STRIDE, coarse, dtype=torch.float64) / scale
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    mapped = eval_tps(tps, torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).reshape(coarse, coarse, 2)
    # Coarse samples sit at pixels 0, STRIDE, 2 * STRIDE, ...: with align_corners=True an output of
    # (coarse - 1) * STRIDE + 1 pixels puts pixel j at coarse position j / STRIDE.
    fine = (coarse - 1) * FIELD_STRIDE + 1
    field = F.interpolate(mapped.permute(2, 0, 1)[None], size=(fine, fine), mode="bilinear",
                          align_corners=True)[0, :, :size, :size]
    return (field.permute(1, 2, 0) * scale).float()


def warp_crop(crop: torch.Tensor, source: FaceLandmarks, target: FaceLandmarks, smoothing: float = 0.0) -> torch.Tensor:
    """Warp one (H, W, C) crop so `source` landmarks land on `target`; only points visible in both move it."""
    h, w = crop.shape[:2]
    if h != w or source.image_size != (w, h) or target.image_size != (w, h):
        raise FaceEditError(f"The warp needs a square crop and landmarks on it: crop {w}x{h}, source "
                            f"{source.image_size}, target {target.image_size}. Use the landmarks from Face Crop.")
    both = (source.visibility > 0) & (target.visibility > 0)
    field = warp_field(source.points[both], target.points[both], w, smoothing)
    grid = field / (w - 1) * 2 - 1
    image = crop.permute(2, 0, 1)[None].float()
    out = F.grid_sample(image, grid[None].to(crop.device), mode="bicubic", padding_mode="border", align_corners=True)
    return out[0].permute(1, 2, 0).clamp(0, 1).to(crop.dtype)


def warp_crops(crops: torch.Tensor, sources: list[FaceLandmarks], targets: list[FaceLandmarks],
               smoothing: float = 0.0) -> torch.Tensor:
    if not (crops.shape[0] == len(sources) == len(targets)):
        raise FaceEditError(f"Got {crops.shape[0]} crop(s), {len(sources)} source and {len(targets)} target landmark "
                            "set(s); they must match one to one.")
    return torch.stack([warp_crop(c, s, t, smoothing) for c, s, t in zip(crops, sources, targets)])
