"""Hyper-parameters of the Step1X-Edit / LaTo DiT. `release()` is the published 12B model; tests build a tiny one."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DiTConfig:
    in_channels: int = 64               # 16 latent channels packed in 2x2 patches
    hidden_size: int = 3072
    num_heads: int = 24
    depth: int = 19                     # double-stream blocks
    depth_single: int = 38              # single-stream blocks
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    axes_dim: tuple[int, int, int] = (16, 56, 56)
    theta: int = 10_000
    vec_in_dim: int = 768               # pooled text vector from the connector
    context_in_dim: int = 4096          # connector tokens
    guidance_embed: bool = False        # Step1X-Edit has no guidance_in
    landmark_dim: int | None = 3072     # width of landmark tokens fed to landmark_in; None: no landmark adapter
    timestep_embed_dim: int = 256
    time_factor: float = 1000.0         # flow time t in [0, 1] is multiplied by this inside the embedding

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if sum(self.axes_dim) != self.head_dim or any(d % 2 for d in self.axes_dim):
            raise ValueError(f"axes_dim {self.axes_dim} must be even and sum to the head dim {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def out_channels(self) -> int:
        return self.in_channels

    @classmethod
    def release(cls) -> "DiTConfig":
        """Step1X-Edit v1.0 as used by LaTo (19 double + 38 single blocks, hidden 3072, 24 heads of 128)."""
        return cls()
