"""Causality-Aware Condition Adapter (CA2), CA-Edit paper Eq. 2-6, as pure torch.

Layout follows ComfyUI attention: q, k, v are (B, N, heads * head_dim). The mask M is per query position (B, Nq),
1 = edit (ComfyUI MASK convention), 0..1.

Ambiguities of the paper, resolved here and exposed as arguments:
- Eq. 4 softmax: `softmax_over="separate"` (default) normalises A_vis over the visual tokens only, like IP-Adapter's
  decoupled cross-attention, so F_txt is unchanged by the adapter; `"joint"` normalises text and visual logits
  together (one softmax over [K_txt; K_vis]) and splits the probabilities.
- Eq. 5 suppression multiplies the attention probabilities after the softmax, without renormalising; Score is one
  value per position shared by all heads.
- Eq. 3 says "two-layer MLP with a softmax activation": a softmax over one channel is identically 1, so the default
  is a sigmoid per position (`score_activation="sigmoid"`); `"softmax"` normalises over the positions (sums to 1).
- Z in Eq. 3 is the layer's query input (hidden states before W^Q, dim query_dim). A ComfyUI attn2 *replace* patch
  only sees q = Z W^Q; set `latent_dim=inner_dim` and pass q there.
- `vis_scale` (default 1, Eq. 6 as printed) scales the visual term, as IP-Adapter's weight does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SOFTMAX_CHOICES = ("separate", "joint")
SCORE_ACTIVATIONS = ("sigmoid", "softmax")


def mask_to_tokens(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """ComfyUI MASK (B, H, W) or (H, W), 1 = edit -> (B, h*w) per token, area-averaged (adaptive average pooling:
    exact area means when H, W are multiples of h, w; overlapping bins otherwise). Row-major like the latent tokens."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"mask must be (B, H, W) or (H, W), got {tuple(mask.shape)}")
    pooled = F.adaptive_avg_pool2d(mask[:, None].float(), (h, w))
    return pooled.reshape(mask.shape[0], h * w).clamp(0.0, 1.0)


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, inner = t.shape
    return t.reshape(b, n, heads, inner // heads).transpose(1, 2)  # (B, heads, N, d)


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    b, heads, n, d = t.shape
    return t.transpose(1, 2).reshape(b, n, heads * d)


def ca2_attention(q: torch.Tensor, k_txt: torch.Tensor, v_txt: torch.Tensor, k_vis: torch.Tensor,
                  v_vis: torch.Tensor, score: torch.Tensor, mask: torch.Tensor, heads: int,
                  softmax_over: str = "separate", vis_scale: float = 1.0, return_text_attn: bool = False):
    """Z_s = F_txt + (A_vis * (1 - Score * M)) V_vis (Eq. 4-6), d = head dim.

    q (B, Nq, C); k_txt, v_txt (B, Nt, C); k_vis, v_vis (B, Nv, C); score, mask (B or 1, Nq) in 0..1.
    Returns (B, Nq, C), and with `return_text_attn` also the head-averaged text probabilities (B, Nq, Nt)
    (the per-layer map STFG averages, Eq. 11)."""
    if softmax_over not in SOFTMAX_CHOICES:
        raise ValueError(f"softmax_over must be one of {SOFTMAX_CHOICES}")
    qh, kt, vt, kv, vv = (_split_heads(t, heads) for t in (q, k_txt, v_txt, k_vis, v_vis))
    scale = 1.0 / math.sqrt(qh.shape[-1])
    logits_txt = qh @ kt.transpose(-1, -2) * scale
    logits_vis = qh @ kv.transpose(-1, -2) * scale
    if softmax_over == "separate":
        a_txt, a_vis = logits_txt.softmax(-1), logits_vis.softmax(-1)
    else:
        joint = torch.cat([logits_txt, logits_vis], dim=-1).softmax(-1)
        a_txt, a_vis = joint.split([kt.shape[-2], kv.shape[-2]], dim=-1)
    out = _merge_heads(a_txt @ vt) + _suppressed(a_vis, vv, score, mask, vis_scale)
    if return_text_attn:
        return out, a_txt.mean(dim=1)
    return out


def _suppressed(a_vis: torch.Tensor, v_vis: torch.Tensor, score: torch.Tensor, mask: torch.Tensor,
                vis_scale: float) -> torch.Tensor:
    keep = 1.0 - score.to(a_vis.dtype) * mask.to(a_vis.dtype)  # (B, Nq): 1 - Score * M
    return vis_scale * _merge_heads((a_vis * keep[:, None, :, None]) @ v_vis)


def ca2_visual_term(q: torch.Tensor, k_vis: torch.Tensor, v_vis: torch.Tensor, score: torch.Tensor,
                    mask: torch.Tensor, heads: int, vis_scale: float = 1.0) -> torch.Tensor:
    """The second term of Eq. 6 alone, (A_vis * (1 - Score * M)) V_vis, softmax over the visual tokens: with
    softmax_over="separate", ca2_attention = text attention + this, so it can be *added* to the output of any
    other attention (ComfyUI's, another pack's patch). Shapes as ca2_attention."""
    qh, kv, vv = (_split_heads(t, heads) for t in (q, k_vis, v_vis))
    a_vis = (qh @ kv.transpose(-1, -2) / math.sqrt(qh.shape[-1])).softmax(-1)
    return _suppressed(a_vis, vv, score, mask, vis_scale)


@dataclass
class CA2Config:
    """Per cross-attention layer. inner_dim = heads * head_dim of the layer; clip_dim = CLIP image token width;
    latent_dim = width of Z fed to the score predictor (query_dim, or inner_dim when only q is at hand)."""
    inner_dim: int
    heads: int
    clip_dim: int
    latent_dim: int
    pooled_text_dim: int
    score_hidden_dim: int = 256
    softmax_over: str = "separate"
    score_activation: str = "sigmoid"
    vis_scale: float = 1.0


class ScorePredictor(nn.Module):
    """Eq. 3: Score = S(Concat(Z, f_txt^pool broadcast)), two linear layers with a SiLU between, one score per
    position: (B, Nq, latent_dim), (B, pooled_dim) -> (B, Nq) in (0, 1)."""

    def __init__(self, latent_dim: int, pooled_text_dim: int, hidden_dim: int = 256, activation: str = "sigmoid"):
        super().__init__()
        if activation not in SCORE_ACTIVATIONS:
            raise ValueError(f"activation must be one of {SCORE_ACTIVATIONS}")
        self.activation = activation
        self.fc1 = nn.Linear(latent_dim + pooled_text_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, 1)

    def forward(self, latent: torch.Tensor, pooled_text: torch.Tensor) -> torch.Tensor:
        if pooled_text.ndim == 3:  # (B, 1, C) pooled token
            pooled_text = pooled_text[:, 0]
        pooled = pooled_text[:, None, :].expand(latent.shape[0], latent.shape[1], -1)  # f_txt^s
        logits = self.fc2(F.silu(self.fc1(torch.cat([latent, pooled.to(latent.dtype)], dim=-1))))[..., 0]
        return logits.sigmoid() if self.activation == "sigmoid" else logits.softmax(dim=-1)


class CA2Attention(nn.Module):
    """The trainable part of CA2 for one cross-attention layer: W_vis^K, W_vis^V (clip_dim -> inner_dim, no bias,
    as IP-Adapter) and the score predictor. The text projections (W^Q, W^K_txt, W^V_txt) stay the base model's."""

    def __init__(self, config: CA2Config):
        super().__init__()
        if config.inner_dim % config.heads:
            raise ValueError("inner_dim must be divisible by heads")
        self.config = config
        self.to_k_vis = nn.Linear(config.clip_dim, config.inner_dim, bias=False)
        self.to_v_vis = nn.Linear(config.clip_dim, config.inner_dim, bias=False)
        self.score_predictor = ScorePredictor(config.latent_dim, config.pooled_text_dim, config.score_hidden_dim,
                                              config.score_activation)

    def visual_kv(self, clip_image_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Nv, clip_dim) -> K_vis, V_vis (B, Nv, inner_dim); cacheable across sampling steps."""
        return self.to_k_vis(clip_image_tokens), self.to_v_vis(clip_image_tokens)

    def forward(self, q: torch.Tensor, k_txt: torch.Tensor, v_txt: torch.Tensor, latent: torch.Tensor,
                clip_image_tokens: torch.Tensor, pooled_text: torch.Tensor, mask_tokens: torch.Tensor,
                return_text_attn: bool = False):
        """q, k_txt, v_txt already projected by the base layer; latent = Z for the score (B, Nq, latent_dim);
        mask_tokens (B or 1, Nq) from `mask_to_tokens`. Returns the attention output before to_out."""
        k_vis, v_vis = self.visual_kv(clip_image_tokens.to(q.dtype))
        score = self.score_predictor(latent, pooled_text)
        c = self.config
        return ca2_attention(q, k_txt, v_txt, k_vis, v_vis, score, mask_tokens, c.heads, c.softmax_over,
                             c.vis_scale, return_text_attn)


def layer_grid(n_tokens: int, h: int, w: int) -> tuple[int, int]:
    """Grid (gh, gw) of a UNet layer with n_tokens positions, for a latent of h x w (downsampled by 2^k, ceil)."""
    for factor in (1, 2, 4, 8, 16, 32, 64):
        gh, gw = math.ceil(h / factor), math.ceil(w / factor)
        if gh * gw == n_tokens:
            return gh, gw
    raise ValueError(f"{n_tokens} tokens do not fit a downsampled {h}x{w} grid")


def pooled_text_token(context: torch.Tensor) -> torch.Tensor:
    """f_txt^pool of Eq. 3: (B, Nt, C) text context -> (B, C), its *last* token. CLIP's text model is causal, so the
    last position has seen the whole prompt like the EOS pooling token, and it is the only summary a UNet patch sees."""
    return context[:, -1]


def expand_to_batch(per_image: torch.Tensor, batch: int, cond_or_uncond: list[int] | None,
                    uncond_zero: bool = False) -> torch.Tensor:
    """Per-image tensor (Bi, ...) -> (batch, ...) for a UNet batch made of len(cond_or_uncond) chunks of equal size
    (ComfyUI concatenates cond / uncond chunks). Bi must be 1 or divide the chunk size. Uncond chunks (1) become
    zeros when uncond_zero (IP-Adapter's image drop: then K_vis = V_vis = 0 and the visual term vanishes)."""
    chunks = list(cond_or_uncond) if cond_or_uncond else [0]
    if batch % len(chunks):
        raise ValueError(f"batch {batch} does not split into {len(chunks)} chunks")
    size = batch // len(chunks)
    if size % per_image.shape[0]:
        raise ValueError(f"{per_image.shape[0]} images do not divide a chunk of {size}")
    chunk = per_image.repeat(size // per_image.shape[0], *([1] * (per_image.ndim - 1)))
    parts = [torch.zeros_like(chunk) if (uncond_zero and c == 1) else chunk for c in chunks]
    return torch.cat(parts, dim=0)


@dataclass
class CA2Call:
    """What one UNet call's CA2 layers need, already expanded to the call's batch."""
    image_tokens: torch.Tensor   # (B, Nv, clip_dim)
    pooled_text: torch.Tensor    # (B, Ct)
    mask: torch.Tensor           # (B, H, W), 1 = edit, any resolution (pooled per layer)
    latent_hw: tuple[int, int]   # latent grid the layer grids are fractions of
    strength: float = 1.0


def ca2_layer_forward(module: CA2Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                      call: CA2Call, base: torch.Tensor | None = None) -> torch.Tensor:
    """One CA2 cross-attention (Eq. 2-6) for projected q, k, v (the score predictor's Z is q = Z W^Q: a ComfyUI
    attn2 patch never sees Z itself), computed in float32 (fp16 logits overflow). With `base`, the output of the
    layer's own text attention (ComfyUI's, or another pack's patch that already added its term), the visual term is
    added to it (softmax_over "separate" only: "joint" changes the text term itself)."""
    c = module.config
    weight = module.to_k_vis.weight
    tokens = call.image_tokens.to(device=weight.device, dtype=weight.dtype)
    k_vis, v_vis = (t.float() for t in module.visual_kv(tokens))
    gh, gw = layer_grid(q.shape[1], *call.latent_hw)
    mask = mask_to_tokens(call.mask.to(q.device), gh, gw)
    score = module.score_predictor(q.to(weight.dtype), call.pooled_text.to(weight.device, weight.dtype)).float()
    if base is not None:
        if c.softmax_over != "separate":
            raise ValueError("A CA2 adapter trained with softmax_over='joint' cannot be added to another attention "
                             "patch on the same layer; remove the other patch or use a 'separate' adapter.")
        term = ca2_visual_term(q.float(), k_vis, v_vis, score, mask, heads, c.vis_scale * call.strength)
        return (base.float() + term).to(base.dtype)
    out = ca2_attention(q.float(), k.float(), v.float(), k_vis, v_vis, score, mask, heads, c.softmax_over,
                        c.vis_scale * call.strength)
    return out.to(q.dtype)
