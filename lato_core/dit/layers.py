"""Small building blocks of the DiT. Parameter names match the BFL FLUX layout (e.g. `scale`, `in_layer`, `lin`)."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, time_factor: float = 1000.0, max_period: float = 10000.0
                       ) -> torch.Tensor:
    """Sinusoidal embedding [cos | sin] of time_factor * t, computed in fp32. t: (B,) flow time in [0, 1].

    Both BFL FLUX / Step1X-Edit (time_factor inside the embedding) and diffusers (timestep * 1000 in forward)
    therefore take the same t in [0, 1].
    """
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=t.device) / half
    freqs = torch.exp(-math.log(max_period) * exponent)
    args = (time_factor * t.float())[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class RMSNorm(nn.Module):
    """RMS norm over the last dim, eps 1e-6, computed in fp32 (weight applied in fp32, like Step1X-Edit)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (x32 * self.scale.float()).to(x.dtype)


class QKNorm(nn.Module):
    """Per-head RMS norms of queries and keys."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.query_norm = RMSNorm(head_dim)
        self.key_norm = RMSNorm(head_dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query_norm(q), self.key_norm(k)


class MLPEmbedder(nn.Module):
    """in_layer -> SiLU -> out_layer (time_in, vector_in, guidance_in)."""

    def __init__(self, in_dim: int, hidden_dim: int, operations=nn):
        super().__init__()
        self.in_layer = operations.Linear(in_dim, hidden_dim, bias=True)
        self.out_layer = operations.Linear(hidden_dim, hidden_dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(nn.functional.silu(self.in_layer(x)))


class ModulationParams(NamedTuple):
    shift: torch.Tensor  # (B, 1, hidden)
    scale: torch.Tensor
    gate: torch.Tensor

    def modulate(self, x_normed: torch.Tensor) -> torch.Tensor:
        return (1 + self.scale) * x_normed + self.shift


class Modulation(nn.Module):
    """adaLN: lin(SiLU(vec)) split into 2 (double block) or 1 (single block) sets of shift, scale, gate."""

    def __init__(self, hidden_size: int, double: bool, operations=nn):
        super().__init__()
        self.num_sets = 2 if double else 1
        self.lin = operations.Linear(hidden_size, 3 * self.num_sets * hidden_size, bias=True)

    def forward(self, vec: torch.Tensor) -> list[ModulationParams]:
        chunks = self.lin(nn.functional.silu(vec))[:, None, :].chunk(3 * self.num_sets, dim=-1)
        return [ModulationParams(*chunks[3 * i: 3 * i + 3]) for i in range(self.num_sets)]


def layer_norm_no_affine(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.layer_norm(x, (x.shape[-1],), eps=1e-6)


class LastLayer(nn.Module):
    """Final adaLN (shift first, then scale) and the linear projection back to packed latent channels."""

    def __init__(self, hidden_size: int, out_channels: int, operations=nn):
        super().__init__()
        self.linear = operations.Linear(hidden_size, out_channels, bias=True)
        # index 1 so the key is `adaLN_modulation.1.*` as in the BFL layout (index 0 is the SiLU)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), operations.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec)[:, None, :].chunk(2, dim=-1)
        return self.linear((1 + scale) * layer_norm_no_affine(x) + shift)
