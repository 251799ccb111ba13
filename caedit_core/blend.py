"""Keeping the unmasked region: masks at latent size and the final feathered pixel paste. (Blended Diffusion at
every step is ComfyUI's own denoise mask, which the STFG guider sets.)

Masks are ComfyUI MASKs, 1 = edit. Blends are written as a * (1 - m) + b * m, so m == 0 gives a bit-exactly and
m == 1 gives b bit-exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def latent_mask(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """MASK (B, H, W), (H, W) or (B, 1, H, W) -> (B, 1, h, w), area-averaged when the size differs."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim == 3:
        mask = mask[:, None]
    mask = mask.float()
    if mask.shape[-2:] != (h, w):
        mask = F.adaptive_avg_pool2d(mask, (h, w))
    return mask.clamp(0.0, 1.0)


def feather_inward(mask: torch.Tensor, feather: int) -> torch.Tensor:
    """Ramp of `feather` pixels inside the mask (mean of 0..feather-1 erosions, 3x3 min): alpha <= mask, so nothing
    outside the mask changes; a binary mask at depth d (1 = edge pixel) gets min(d, feather) / feather.
    The image border does not erode. (B, 1, H, W) -> same."""
    if feather <= 0:
        return mask
    eroded, total = mask, torch.zeros_like(mask)
    for _ in range(int(feather)):
        total = total + eroded
        eroded = -F.max_pool2d(-eroded, kernel_size=3, stride=1, padding=1)
    return total / int(feather)


def paste_pixels(edited: torch.Tensor, source: torch.Tensor, mask: torch.Tensor, feather: int = 8) -> torch.Tensor:
    """Final paste of the decoded edit into the source photo. IMAGE (B, H, W, C) 0..1, MASK (B, H, W) 1 = edit
    (resized by area if needed); feathered inward by `feather` pixels. Outside the mask = source exactly."""
    alpha = feather_inward(latent_mask(mask, *source.shape[1:3]), feather)
    alpha = alpha[:, 0, :, :, None].to(device=source.device, dtype=source.dtype)  # (B, H, W, 1)
    return source * (1.0 - alpha) + edited.to(source.dtype) * alpha
