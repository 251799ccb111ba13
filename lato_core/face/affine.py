"""Affine resampling of images with torch (CPU or GPU), antialiased when the map shrinks the picture."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer after inner, both 2x3."""
    a = np.vstack([outer, [0.0, 0.0, 1.0]])
    b = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (a @ b)[:2]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return pts @ np.asarray(matrix, dtype=np.float64)[:, :2].T + np.asarray(matrix, dtype=np.float64)[:, 2]


def _prefilter(src: torch.Tensor, matrix: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Shrink src first when one output pixel spans several source pixels; returns the adjusted map."""
    shrink = 1.0 / math.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2])))  # source pixels per output pixel
    if shrink <= 1.25:
        return src, matrix
    h, w = src.shape[-2:]
    nh, nw = max(1, round(h / shrink)), max(1, round(w / shrink))
    small = F.interpolate(src, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
    # Pixel-centre coordinates: x_small = (x + 0.5) * nw / w - 0.5
    sx, sy = nw / w, nh / h
    to_small = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    return small, compose_affine(matrix, invert_affine(to_small))


def warp_affine(src: torch.Tensor, matrix: np.ndarray, out_hw: tuple[int, int], mode: str = "bicubic",
                padding: str = "border", clamp: bool = True,
                antialias: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample src (B, C, H, W) so that out[y, x] = src[M^-1 (x, y)], M mapping source to output pixels.

    antialias shrinks src first where the map minifies, so fine detail does not alias.
    Returns the warped image and a (B, 1, h, w) coverage mask: 1 where the source point lies inside src.
    """
    if antialias:
        src, matrix = _prefilter(src, matrix)
    h, w = src.shape[-2:]
    oh, ow = out_hw
    inv = invert_affine(matrix)
    ys, xs = torch.meshgrid(torch.arange(oh, dtype=torch.float64), torch.arange(ow, dtype=torch.float64), indexing="ij")
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    gx = 2.0 * sx / max(w - 1, 1) - 1.0
    gy = 2.0 * sy / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1).to(src.device, torch.float32)[None].expand(src.shape[0], -1, -1, -1)
    out = F.grid_sample(src.float(), grid, mode=mode, padding_mode=padding, align_corners=True)
    inside = ((sx >= -0.5) & (sx <= w - 0.5) & (sy >= -0.5) & (sy <= h - 0.5)).to(src.device, torch.float32)
    if clamp:
        out = out.clamp(0.0, 1.0)
    return out.to(src.dtype), inside[None, None].expand(src.shape[0], 1, -1, -1)
