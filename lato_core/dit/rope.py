"""3-axis rotary position embedding (axes: index, row, column) and the position ids of every token kind.

Ids are (axis0, row, col) floats. Text tokens sit at (0, 0, 0); noisy and source image tokens at (0, row, col)
on the latent grid (source identical to noisy, no offset); landmark tokens at (0, y / s_y, x / s_x), fractional,
no half-cell centring, where (x, y) are pixel coordinates on the landmark canvas.
"""
from __future__ import annotations

import torch

RELEASE_LANDMARK_CANVAS = 512  # the release measures landmarks on a 512 x 512 canvas


def text_ids(num_tokens: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, 3) zeros."""
    return torch.zeros(num_tokens, 3, dtype=torch.float32, device=device)


def image_ids(grid_h: int, grid_w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(grid_h * grid_w, 3) ids (0, row, col) in row-major token order, matching 2x2 patch packing."""
    rows = torch.arange(grid_h, dtype=torch.float32, device=device)[:, None].expand(grid_h, grid_w)
    cols = torch.arange(grid_w, dtype=torch.float32, device=device)[None, :].expand(grid_h, grid_w)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(grid_h * grid_w, 3)


def landmark_scales(canvas_hw: tuple[float, float], grid_hw: tuple[int, int],
                    release_height_only_scaling: bool = False) -> tuple[float, float]:
    """Pixels per latent cell (s_y, s_x). Per-axis: s_y = H_px / grid_h, s_x = W_px / grid_w.

    release_height_only_scaling reproduces the release, which stretches the picture to a 512 x 512 canvas and
    uses s = 512 / grid_h on both axes there: x_512 / s = (x * 512 / W_px) / (512 / grid_h), i.e. s_x = W_px / grid_h
    on the crop's own pixels. Identical to per-axis scaling for square images, wrong for non-square ones.
    """
    canvas_h, canvas_w = canvas_hw
    grid_h, grid_w = grid_hw
    return canvas_h / grid_h, canvas_w / (grid_h if release_height_only_scaling else grid_w)


def landmark_ids(xy: torch.Tensor, grid_hw: tuple[int, int],
                 canvas_hw: tuple[float, float] = (RELEASE_LANDMARK_CANVAS, RELEASE_LANDMARK_CANVAS),
                 release_height_only_scaling: bool = False) -> torch.Tensor:
    """(..., L, 2) pixel coords (x, y), origin top-left, on the landmark canvas -> (..., L, 3) ids (0, y/s_y, x/s_x)."""
    if xy.shape[-1] != 2:
        raise ValueError(f"landmark coordinates must end in (x, y); got shape {tuple(xy.shape)}")
    s_y, s_x = landmark_scales(canvas_hw, grid_hw, release_height_only_scaling)
    xy = xy.float()
    return torch.stack([torch.zeros_like(xy[..., 0]), xy[..., 1] / s_y, xy[..., 0] / s_x], dim=-1)


def rope_cos_sin(ids: torch.Tensor, axes_dim: tuple[int, ...], theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (..., L, n_axes) -> cos, sin of shape (..., L, head_dim / 2), fp32.

    Angles are formed in float64 where the device supports it (as BFL and diffusers do) and returned in fp32;
    axis i uses frequencies theta ** (-arange(0, d_i, 2) / d_i).
    """
    work_dtype = torch.float32 if ids.device.type == "mps" else torch.float64
    pos = ids.to(work_dtype)
    angles = []
    for axis, dim in enumerate(axes_dim):
        omega = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=work_dtype, device=ids.device) / dim)
        angles.append(pos[..., axis, None] * omega)
    angle = torch.cat(angles, dim=-1)
    return torch.cos(angle).float(), torch.sin(angle).float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs (x[2j], x[2j+1]) of x (B, heads, L, D) by the angles; fp32 math, x's dtype out.

    cos, sin: (B or 1, 1, L, D / 2).
    """
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([cos * even - sin * odd, sin * even + cos * odd], dim=-1)
    return rotated.flatten(-2).to(x.dtype)
