"""Nearest-neighbour vector quantiser with an EMA-trained codebook and dead-code resets.

Only `codebook` is saved (the released layout has just vq.codebook); the EMA statistics are training
state, created on the first training step from the current codebook.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor    # (B, D, L): codebook rows; straight-through z + sg(q - z) when z needs grad
    indices: torch.Tensor      # (B, L) int64
    commit_loss: torch.Tensor  # beta * mean((z - sg(q))^2)
    perplexity: torch.Tensor   # exp(entropy) of this batch's code usage


class VectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int, code_dim: int, ema_decay: float = 0.99, reset_interval: int = 50,
                 dead_code_threshold: float = 1.0, commitment_beta: float = 0.25):
        super().__init__()
        self.codebook_size, self.code_dim = codebook_size, code_dim
        self.ema_decay, self.reset_interval = ema_decay, reset_interval
        self.dead_code_threshold, self.commitment_beta = dead_code_threshold, commitment_beta
        self.register_buffer("codebook", torch.zeros(codebook_size, code_dim))
        # Training state (fp32, not saved); None until the first training step.
        self.register_buffer("ema_count", None, persistent=False)
        self.register_buffer("ema_sum", None, persistent=False)
        self.register_buffer("window_usage", None, persistent=False)
        self.steps_in_window = 0

    # --- lookup ---------------------------------------------------------------------------------
    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) index of the closest codebook row by squared L2, computed in fp32."""
        z = vectors.float()
        book = self.codebook.float()
        distance = z.pow(2).sum(1, keepdim=True) - 2.0 * (z @ book.t()) + book.pow(2).sum(1)[None]
        return distance.argmin(dim=1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Any-shaped indices -> codebook rows with a trailing code_dim axis."""
        return F.embedding(indices, self.codebook)

    # --- forward --------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        batch, dim, length = z.shape
        if dim != self.code_dim:
            raise ValueError(f"quantizer expects {self.code_dim} channels, got {dim}")
        flat = z.transpose(1, 2).reshape(-1, dim)
        if self.training:
            self._start_training_state(flat.detach())
        indices = self.nearest(flat)
        quantized = self.lookup(indices).to(flat.dtype)
        commit = self.commitment_beta * F.mse_loss(flat.float(), quantized.detach().float())
        counts = torch.bincount(indices, minlength=self.codebook_size).float()
        if self.training:
            self.ema_update(flat.detach(), indices, counts)
        if flat.requires_grad:
            quantized = flat + (quantized - flat).detach()
        return QuantizerOutput(
            quantized=quantized.reshape(batch, length, dim).transpose(1, 2),
            indices=indices.reshape(batch, length),
            commit_loss=commit,
            perplexity=_perplexity(counts),
        )

    # --- training -------------------------------------------------------------------------------
    @torch.no_grad()
    def _start_training_state(self, vectors: torch.Tensor) -> None:
        if self.ema_count is not None:
            if self.ema_sum.dtype != torch.float32:  # module.to(half) also casts these buffers
                self.ema_sum, self.ema_count = self.ema_sum.float(), self.ema_count.float()
                self.window_usage = self.window_usage.float()
            return
        if not torch.any(self.codebook != 0):
            self.codebook.copy_(_sample_rows(vectors, self.codebook_size))  # data-dependent init
        self.ema_sum = self.codebook.detach().float().clone()
        self.ema_count = torch.ones(self.codebook_size, device=self.codebook.device)
        self.window_usage = torch.zeros(self.codebook_size, device=self.codebook.device)
        self.steps_in_window = 0

    @torch.no_grad()
    def ema_update(self, vectors: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor | None = None) -> int:
        """One EMA step: count <- d*count + (1-d)*n_k, sum <- d*sum + (1-d)*sum_k, code <- sum/count.

        Every `reset_interval` calls, codes used fewer than `dead_code_threshold` times since the last
        check are replaced by random rows of `vectors`. Returns how many codes were reset.
        """
        self._start_training_state(vectors)
        vectors = vectors.float()
        if counts is None:
            counts = torch.bincount(indices, minlength=self.codebook_size).float()
        sums = torch.zeros_like(self.ema_sum).index_add_(0, indices, vectors)
        decay = self.ema_decay
        self.ema_count.mul_(decay).add_(counts, alpha=1.0 - decay)
        self.ema_sum.mul_(decay).add_(sums, alpha=1.0 - decay)
        alive = self.ema_count > 1e-12  # unused codes keep sum/count anyway; avoid 0/0 after long disuse
        updated = self.ema_sum / self.ema_count.clamp_min(1e-12)[:, None]
        self.codebook.copy_(torch.where(alive[:, None], updated, self.codebook.float()))
        self.window_usage.add_(counts)
        self.steps_in_window += 1
        if self.steps_in_window < self.reset_interval:
            return 0
        reset = self.reset_dead_codes(vectors)
        self.window_usage.zero_()
        self.steps_in_window = 0
        return reset

    @torch.no_grad()
    def reset_dead_codes(self, vectors: torch.Tensor) -> int:
        """Replace codes whose window usage is below the threshold with random rows of `vectors`."""
        self._start_training_state(vectors)
        dead = torch.nonzero(self.window_usage < self.dead_code_threshold).flatten()
        if dead.numel() == 0:
            return 0
        fresh = _sample_rows(vectors.float(), dead.numel())
        self.codebook[dead] = fresh.to(self.codebook.dtype)
        self.ema_sum[dead] = fresh
        self.ema_count[dead] = 1.0
        return int(dead.numel())


def _sample_rows(vectors: torch.Tensor, count: int) -> torch.Tensor:
    """`count` distinct random rows of `vectors`; with too few rows, repeats get a little noise."""
    if vectors.shape[0] >= count:
        return vectors[torch.randperm(vectors.shape[0], device=vectors.device)[:count]].clone()
    picks = vectors[torch.randint(vectors.shape[0], (count,), device=vectors.device)]
    return picks + torch.randn_like(picks) * (0.01 / vectors.shape[1] ** 0.5)


def _perplexity(counts: torch.Tensor) -> torch.Tensor:
    probs = counts / counts.sum().clamp_min(1.0)
    return torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
