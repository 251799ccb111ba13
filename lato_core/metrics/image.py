"""SSIM with a Gaussian window, in torch (float64), matching skimage.metrics.structural_similarity(
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ImageFormatError
from ..face.image import as_rgb_float

SIGMA = 1.5
TRUNCATE = 3.5  # skimage's window: radius int(3.5 * 1.5 + 0.5) = 5, i.e. 11 x 11
K1, K2 = 0.01, 0.03


def gaussian_window(sigma: float = SIGMA, truncate: float = TRUNCATE) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-x * x / (2.0 * sigma * sigma))
    return g / g.sum()


def _as_chw(image) -> torch.Tensor:
    arr = image.detach().cpu().numpy() if torch.is_tensor(image) else np.asarray(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    return torch.from_numpy(as_rgb_float(arr)).double().permute(2, 0, 1)


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter over the last two axes (unfold + matmul: faster than conv2d here)."""
    k = g.numel()
    x = (x.unfold(-1, k, 1) @ g).transpose(-1, -2).contiguous()
    return (x.unfold(-1, k, 1) @ g).transpose(-1, -2)


def ssim_map(a, b, data_range: float = 1.0, sigma: float = SIGMA) -> torch.Tensor:
    """(C, H - 2r, W - 2r) local SSIM of two images (H, W, C), uint8 or float 0..1; the border of
    window radius r is left out, as skimage does."""
    x, y = _as_chw(a), _as_chw(b)
    if x.shape != y.shape:
        raise ImageFormatError(f"SSIM needs two images of the same size, got {tuple(x.shape[1:])} and "
                               f"{tuple(y.shape[1:])}.")
    g = gaussian_window(sigma)
    if min(x.shape[1:]) < g.numel():
        raise ImageFormatError(f"SSIM needs images of at least {g.numel()} pixels per side, got {tuple(x.shape[1:])}.")
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    stack = torch.cat([x, y, x * x, y * y, x * y])   # (5C, H, W)
    mx, my, mxx, myy, mxy = _blur(stack, g).chunk(5)
    vx, vy, vxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    return ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(a, b, data_range: float = 1.0, sigma: float = SIGMA) -> float:
    """Mean SSIM over pixels and RGB channels; 1 for identical images."""
    return float(ssim_map(a, b, data_range, sigma).mean())
