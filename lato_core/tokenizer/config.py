"""Sizes and training knobs of the LaTo landmark tokenizer (a VQ-VAE over the 68-point sequence)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenizerConfig:
    """Architecture (must match the weights) and codebook-training settings (free to change).

    channels = (low, high): encoder widths before and after resnet2; the decoder mirrors them.
    dilation_reference: the dilated k3 conv of a ResBlock with `out` channels uses
    dilation = max(1, dilation_reference // out - 1). It cannot be read from a weight file.
    """

    in_channels: int = 2
    channels: tuple[int, int] = (128, 512)
    code_dim: int = 3072
    codebook_size: int = 8192
    num_res_blocks: int = 3
    dilation_reference: int = 512
    groups: int = 32
    norm_eps: float = 1e-6
    seq_len: int = 68
    # Codebook training (paper 3.2.1 / 4.1; the release trained with decay 0.99).
    ema_decay: float = 0.99
    reset_interval: int = 50          # check for dead codes every N training steps
    dead_code_threshold: float = 1.0  # a code used fewer times than this in the window is dead
    commitment_beta: float = 0.25     # not given in the paper; the usual VQ-VAE value

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != 2:
            raise ValueError(f"channels must be (low, high), got {self.channels}")
        for c in self.channels:
            if c % self.groups:
                raise ValueError(f"channel width {c} is not a multiple of GroupNorm groups={self.groups}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.reset_interval < 1:
            raise ValueError(f"reset_interval must be >= 1, got {self.reset_interval}")

    @classmethod
    def release(cls) -> "TokenizerConfig":
        """The sizes of the released Po_VQVAE/model.safetensors (fp32, ~44.6M values with the codebook)."""
        return cls()

    def dilation(self, out_channels: int) -> int:
        return max(1, self.dilation_reference // out_channels - 1)

    @property
    def architecture(self) -> dict:
        """The fields a weight file fixes (used to compare a file against a config)."""
        return {
            "in_channels": self.in_channels,
            "channels": self.channels,
            "code_dim": self.code_dim,
            "codebook_size": self.codebook_size,
            "num_res_blocks": self.num_res_blocks,
        }
