"""LaTo landmark tokenizer: Conv1d encoder -> nearest-neighbour codebook -> mirrored decoder.

Input is (B, 2, 68): channels (x, y) in [-1, 1] (see loading.points_to_tokens_input). The DiT needs only
encode(); the decoder exists for training and for checking reconstructions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LandmarkFormatError
from .blocks import ConvStack1d
from .config import TokenizerConfig
from .quantizer import VectorQuantizer


@dataclass
class TokenizerOutput:
    indices: torch.Tensor                  # (B, L)
    quantized: torch.Tensor                # (B, D, L), straight-through in training
    reconstruction: torch.Tensor | None    # (B, 2, L), None without a decoder
    loss: torch.Tensor                     # recon_loss + commit_loss
    recon_loss: torch.Tensor               # mean |x - x_hat| (0 without a decoder)
    commit_loss: torch.Tensor              # beta * mean((z - sg(q))^2)
    perplexity: torch.Tensor


def build_encoder(config: TokenizerConfig) -> ConvStack1d:
    return ConvStack1d(config.in_channels, config.channels, config.code_dim, config.num_res_blocks,
                       config.dilation, config.groups, config.norm_eps)


def build_decoder(config: TokenizerConfig) -> ConvStack1d:
    low, high = config.channels
    return ConvStack1d(config.code_dim, (high, low), config.in_channels, config.num_res_blocks,
                       config.dilation, config.groups, config.norm_eps)


class LandmarkTokenizer(nn.Module):
    """State-dict keys are exactly the release's: encoder.*, vq.codebook, decoder.* (optional)."""

    def __init__(self, config: TokenizerConfig | None = None, with_decoder: bool = True):
        super().__init__()
        self.config = config or TokenizerConfig.release()
        cfg = self.config
        self.encoder = build_encoder(cfg)
        self.vq = VectorQuantizer(cfg.codebook_size, cfg.code_dim, cfg.ema_decay, cfg.reset_interval,
                                  cfg.dead_code_threshold, cfg.commitment_beta)
        self.decoder = build_decoder(cfg) if with_decoder else None

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None

    @property
    def device(self) -> torch.device:
        return self.vq.codebook.device

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv_in.weight.dtype

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x.dim() != 3 or x.shape[1] != cfg.in_channels or x.shape[2] != cfg.seq_len:
            raise LandmarkFormatError(
                f"the landmark tokenizer takes (batch, {cfg.in_channels}, {cfg.seq_len}) normalised points, "
                f"got shape {tuple(x.shape)}; convert (batch, 68, 2) pixels with points_to_tokens_input()")
        return x.to(device=self.device, dtype=self.dtype)

    def encode_continuous(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, L) -> encoder output z (B, code_dim, L) before quantisation."""
        return self.encoder(self._prepare(x))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 2, L) -> (indices (B, L) int64, code vectors (B, L, code_dim)): the landmark tokens.

        The vectors are exact codebook rows (what the release feeds to landmark_in), in the model dtype.
        """
        z = self.encode_continuous(x)
        indices = self.vq.nearest(z.transpose(1, 2).reshape(-1, z.shape[1])).reshape(z.shape[0], z.shape[2])
        return indices, self.vq.lookup(indices)

    def codes_for(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, L) indices -> (B, L, code_dim) codebook rows."""
        return self.vq.lookup(indices.to(self.device))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, L, code_dim) code vectors, or (B, L) indices -> reconstructed (B, 2, L) in [-1, 1] units."""
        if self.decoder is None:
            raise RuntimeError("this landmark tokenizer was loaded without decoder weights (decoder.*); "
                               "decoding needs a checkpoint that includes them")
        if not torch.is_floating_point(codes):
            codes = self.codes_for(codes)
        return self.decoder(codes.to(device=self.device, dtype=self.dtype).transpose(1, 2))

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        """Full pass with loss terms. In train() mode the codebook also takes its EMA step and resets."""
        x = self._prepare(x)
        vq = self.vq(self.encoder(x))
        if self.decoder is not None:
            reconstruction = self.decoder(vq.quantized)
            recon_loss = F.l1_loss(reconstruction.float(), x.float())
        else:
            reconstruction, recon_loss = None, vq.commit_loss.new_zeros(())
        return TokenizerOutput(
            indices=vq.indices, quantized=vq.quantized, reconstruction=reconstruction,
            loss=recon_loss + vq.commit_loss, recon_loss=recon_loss, commit_loss=vq.commit_loss,
            perplexity=vq.perplexity,
        )
