"""The one tiny landmark-tokenizer config and random model every tokenizer test uses."""
from __future__ import annotations

from dataclasses import replace

import torch

from lato_core.tokenizer import LandmarkTokenizer, TokenizerConfig

# Widths are multiples of 32 (GroupNorm groups). dilation_reference 128 gives dilation 3 at 32 channels and
# 1 at 64, the same pattern as the release (3 at 128, 1 at 512).
TINY = TokenizerConfig(channels=(32, 64), code_dim=48, codebook_size=64, num_res_blocks=3, dilation_reference=128,
                       reset_interval=50)


def tiny_config(**changes) -> TokenizerConfig:
    return replace(TINY, **changes)


def tiny_tokenizer(seed: int = 0, with_decoder: bool = True,
                   config: TokenizerConfig | None = None) -> LandmarkTokenizer:
    """A random tiny model in eval mode. GroupNorm affines and the codebook are randomised too, so parity
    tests exercise every weight; the codebook spread roughly matches the encoder outputs."""
    torch.manual_seed(seed)
    model = LandmarkTokenizer(config or TINY, with_decoder=with_decoder)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if ".block.0." in name or ".block.3." in name or ".norm." in name:
                tensor.copy_(torch.randn_like(tensor) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
        z = model.encode_continuous(synthetic_landmarks(16, seed=seed + 1))
        vectors = z.transpose(1, 2).reshape(-1, z.shape[1])
        picks = vectors[torch.randperm(vectors.shape[0])[: model.config.codebook_size]]
        model.vq.codebook.copy_(picks + 0.1 * picks.std() * torch.randn_like(picks))
    return model.eval()


def synthetic_landmarks(batch: int, seed: int = 0) -> torch.Tensor:
    """(B, 2, 68) face-like point sets in [-1, 1]: a template jittered by scale, shift, rotation and noise."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, 68)
    template = torch.stack([0.6 * torch.cos(2 * torch.pi * t * 1.5), 0.6 * torch.sin(2 * torch.pi * t * 2.5)])
    angle = (torch.rand(batch, generator=gen) - 0.5) * 0.6
    rot = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1), torch.stack([angle.sin(), angle.cos()], -1)], -2)
    scale = 0.8 + 0.4 * torch.rand(batch, 1, 1, generator=gen)
    shift = (torch.rand(batch, 2, 1, generator=gen) - 0.5) * 0.4
    noise = 0.02 * torch.randn(batch, 2, 68, generator=gen)
    return (scale * (rot @ template) + shift + noise).clamp(-1, 1)
