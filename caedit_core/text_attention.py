"""Text cross-attention maps for STFG's boundary region (CA-Edit Eq. 11): recording them and choosing the tokens.

Which tokens (`TOKEN_CHOICES`; Eq. 11 averages over "all" tokens, which with a softmax over tokens is 1/l at every
position and carries no information). "auto" (default) is "prompt" when the prompt's tokens are known, else
"all_but_start":
- "prompt" (default when the prompt's tokens are known): the prompt's own word tokens, without the start token,
  the end token and the padding (SD1.5 pads with the end token, so start/end/padding together take most of the
  77 positions and would otherwise decide the map).
- "all_but_start": every position after the start token (end and padding included).
- "all": Eq. 11 as printed (degenerate; for reference).
Which maps: the main UNet's cross-attention layers, or the reference net's (the appendix's choice) when a CA-Edit
adapter with a reference net is on the model (see comfy_patches).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .ca2 import layer_grid

TOKEN_CHOICES = ("auto", "prompt", "all_but_start", "all")


def text_attention_probs(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """Head-averaged softmax(q k^T / sqrt(d)) in float32: q (B, Nq, C), k (B, Nt, C) -> (B, Nq, Nt)."""
    b, nq, inner = q.shape
    qh, kh = (t.reshape(b, -1, heads, inner // heads).transpose(1, 2).float() for t in (q, k))
    return (qh @ kh.transpose(-1, -2) / math.sqrt(inner // heads)).softmax(-1).mean(dim=1)


def prompt_token_positions(chunk: Sequence) -> list[int]:
    """Positions of a prompt's own tokens in one tokenized 77-token chunk [start, words..., end, padding...]:
    everything that is neither the chunk's first token (start) nor its last token id (end = SD1.5's padding).
    Items may be ids or (id, weight[, word]) tuples; embedding vectors (textual inversion) count as words."""
    ids = [item[0] if isinstance(item, (tuple, list)) else item for item in chunk]
    if len(ids) < 3:
        raise ValueError("a tokenized chunk has a start token, words and an end token")
    start, end = ids[0], ids[-1]
    return [i for i, t in enumerate(ids) if i > 0 and not (isinstance(t, int) and t in (start, end))]


def token_selection(choice: str, prompt_positions: Sequence[int] | None = None) -> slice | list[int] | None:
    """The token index for mean_text_attention: "prompt" needs the positions (prompt_token_positions)."""
    if choice not in TOKEN_CHOICES:
        raise ValueError(f"tokens must be one of {TOKEN_CHOICES}")
    if choice == "auto":
        choice = "prompt" if prompt_positions else "all_but_start"
    if choice == "prompt":
        if not prompt_positions:
            raise ValueError("tokens='prompt' needs the prompt's token positions (connect the CLIP and its text)")
        return list(prompt_positions)
    return slice(1, None) if choice == "all_but_start" else None


def mean_text_attention(layer_attn: Sequence[torch.Tensor], h: int, w: int,
                        token_indices: Sequence[int] | slice | None = slice(1, None)) -> torch.Tensor:
    """Eq. 11: each layer's head-averaged text attention (B, Nq_i, Nt) is upsampled (bilinear) to h x w and the
    selected tokens' maps are averaged over tokens and layers -> (B, h, w). None = all tokens (degenerate)."""
    maps = []
    for attn in layer_attn:
        sel = attn if token_indices is None else attn[..., token_indices]
        gh, gw = layer_grid(attn.shape[1], h, w)
        token_mean = sel.float().mean(dim=-1).reshape(attn.shape[0], 1, gh, gw)
        maps.append(F.interpolate(token_mean, size=(h, w), mode="bilinear", align_corners=False)[:, 0])
    return torch.stack(maps).mean(dim=0)


class TextAttentionRecorder:
    """Collects, while active, the head-averaged text attention of the positive (cond) rows, one entry per layer
    call, detached and float32: what STFG's boundary region is computed from."""

    def __init__(self):
        self.active = False
        self.maps: list[torch.Tensor] = []

    def start(self) -> None:
        self.active, self.maps = True, []

    def stop(self) -> list[torch.Tensor]:
        self.active = False
        return self.maps

    def add(self, text_attn: torch.Tensor, cond_or_uncond: list[int] | None) -> None:
        chunks = list(cond_or_uncond) if cond_or_uncond else [0]
        if 0 not in chunks:
            return
        size = text_attn.shape[0] // len(chunks)
        first = chunks.index(0) * size
        self.maps.append(text_attn[first:first + size].detach().float())

    def record(self, q: torch.Tensor, k: torch.Tensor, heads: int, cond_or_uncond: list[int] | None) -> None:
        if self.active:
            self.add(text_attention_probs(q, k, heads), cond_or_uncond)
