"""Latents <-> DiT tokens: 2x2 patches in the BFL FLUX order.

A latent (B, C, H, W) becomes (B, (H/2)*(W/2), C*4) with tokens row-major over the patch grid and the
features of one token ordered (channel, patch row, patch column): feature index = c*4 + dy*2 + dx.
With the FLUX VAE (8x downscale) one token covers 16x16 pixels, so N = (H_px/16) * (W_px/16).
"""
from __future__ import annotations

import torch

from ..errors import FaceEditError

PATCH = 2
VAE_DOWNSCALE = 8
PIXELS_PER_TOKEN = PATCH * VAE_DOWNSCALE  # 16


class LatentSizeError(FaceEditError):
    pass


def grid_hw_for_pixels(height: int, width: int) -> tuple[int, int]:
    """Token grid (rows, cols) for an image of height x width pixels; both must be multiples of 16."""
    if height % PIXELS_PER_TOKEN or width % PIXELS_PER_TOKEN or height <= 0 or width <= 0:
        raise LatentSizeError(
            f"image size {width}x{height} (WxH) is not a multiple of {PIXELS_PER_TOKEN} pixels on both sides: "
            f"resize or crop it, e.g. to {max(16, width // 16 * 16)}x{max(16, height // 16 * 16)}")
    return height // PIXELS_PER_TOKEN, width // PIXELS_PER_TOKEN


def grid_hw_for_latent(latent: torch.Tensor) -> tuple[int, int]:
    """Token grid for an unpacked latent (B, C, H, W); H and W must be even."""
    height, width = latent.shape[-2:]
    if height % PATCH or width % PATCH:
        raise LatentSizeError(
            f"latent size {width}x{height} is odd: the image must be a multiple of {PIXELS_PER_TOKEN} pixels "
            f"on both sides (resize or crop it)")
    return height // PATCH, width // PATCH


def pack_latents(latent: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, (H/2)*(W/2), C*4)."""
    if latent.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) latent, got shape {tuple(latent.shape)}")
    batch, channels = latent.shape[:2]
    rows, cols = grid_hw_for_latent(latent)
    patches = latent.reshape(batch, channels, rows, PATCH, cols, PATCH)
    patches = patches.permute(0, 2, 4, 1, 3, 5)   # B, rows, cols, C, dy, dx
    return patches.reshape(batch, rows * cols, channels * PATCH * PATCH)


def unpack_latents(tokens: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """(B, rows*cols, C*4) -> (B, C, 2*rows, 2*cols); inverse of pack_latents."""
    batch, num_tokens, features = tokens.shape
    rows, cols = grid_hw
    if num_tokens != rows * cols or features % (PATCH * PATCH):
        raise ValueError(f"tokens {tuple(tokens.shape)} do not fit grid {rows}x{cols} of 2x2 patches")
    channels = features // (PATCH * PATCH)
    patches = tokens.reshape(batch, rows, cols, channels, PATCH, PATCH)
    patches = patches.permute(0, 3, 1, 4, 2, 5)   # B, C, rows, dy, cols, dx
    return patches.reshape(batch, channels, rows * PATCH, cols * PATCH)
