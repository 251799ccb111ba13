"""Double-stream (separate text / image weights, joint attention) and single-stream (fused) DiT blocks."""
from __future__ import annotations

import torch
from torch import nn

from .layers import Modulation, QKNorm, layer_norm_no_affine
from .rope import apply_rope


def split_heads(qkv: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, L, 3 * heads * D) laid out as (qkv, head, dim) -> q, k, v each (B, heads, L, D)."""
    b, length, _ = qkv.shape
    q, k, v = qkv.view(b, length, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
    return q, k, v


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
              key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """RoPE on q and k, then torch SDPA. key_mask (B, L) bool, True = may be attended to. Returns (B, L, heads*D)."""
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    attn_mask = None if key_mask is None else key_mask[:, None, None, :]
    out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return out.transpose(1, 2).flatten(2)


class SelfAttention(nn.Module):
    """Holds the qkv / QK-norm / output projection weights of one stream (`*_attn.{qkv,norm,proj}`)."""

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool, operations=nn):
        super().__init__()
        self.qkv = operations.Linear(hidden_size, 3 * hidden_size, bias=qkv_bias)
        self.norm = QKNorm(hidden_size // num_heads)
        self.proj = operations.Linear(hidden_size, hidden_size, bias=True)


def feed_forward(hidden_size: int, mlp_hidden: int, operations=nn) -> nn.Sequential:
    return nn.Sequential(operations.Linear(hidden_size, mlp_hidden), nn.GELU(approximate="tanh"),
                         operations.Linear(mlp_hidden, hidden_size))


class DoubleStreamBlock(nn.Module):
    """Text and image streams with their own weights; one attention over [text, image]."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, operations=nn):
        super().__init__()
        self.num_heads = num_heads
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.img_mod = Modulation(hidden_size, double=True, operations=operations)
        self.img_attn = SelfAttention(hidden_size, num_heads, qkv_bias, operations)
        self.img_mlp = feed_forward(hidden_size, mlp_hidden, operations)
        self.txt_mod = Modulation(hidden_size, double=True, operations=operations)
        self.txt_attn = SelfAttention(hidden_size, num_heads, qkv_bias, operations)
        self.txt_mlp = feed_forward(hidden_size, mlp_hidden, operations)

    def _qkv(self, x: torch.Tensor, mod, attn: SelfAttention):
        q, k, v = split_heads(attn.qkv(mod.modulate(layer_norm_no_affine(x))), self.num_heads)
        q, k = attn.norm(q, k)
        return q, k, v

    def forward(self, img: torch.Tensor, txt: torch.Tensor, vec: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor, key_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        img_mod_attn, img_mod_mlp = self.img_mod(vec)
        txt_mod_attn, txt_mod_mlp = self.txt_mod(vec)
        img_q, img_k, img_v = self._qkv(img, img_mod_attn, self.img_attn)
        txt_q, txt_k, txt_v = self._qkv(txt, txt_mod_attn, self.txt_attn)

        joint = attention(torch.cat([txt_q, img_q], dim=2), torch.cat([txt_k, img_k], dim=2),
                          torch.cat([txt_v, img_v], dim=2), cos, sin, key_mask)
        txt_out, img_out = joint[:, : txt.shape[1]], joint[:, txt.shape[1]:]

        img = img + img_mod_attn.gate * self.img_attn.proj(img_out)
        img = img + img_mod_mlp.gate * self.img_mlp(img_mod_mlp.modulate(layer_norm_no_affine(img)))
        txt = txt + txt_mod_attn.gate * self.txt_attn.proj(txt_out)
        txt = txt + txt_mod_mlp.gate * self.txt_mlp(txt_mod_mlp.modulate(layer_norm_no_affine(txt)))
        return img, txt


class SingleStreamBlock(nn.Module):
    """One shared stream: linear1 = [q, k, v, mlp_in], linear2 = [attn_out, mlp_out] -> hidden (parallel MLP)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, operations=nn):
        super().__init__()
        self.num_heads = num_heads
        self.hidden_size = hidden_size
        self.mlp_hidden = int(hidden_size * mlp_ratio)
        self.linear1 = operations.Linear(hidden_size, 3 * hidden_size + self.mlp_hidden)
        self.linear2 = operations.Linear(hidden_size + self.mlp_hidden, hidden_size)
        self.norm = QKNorm(hidden_size // num_heads)
        self.modulation = Modulation(hidden_size, double=False, operations=operations)

    def forward(self, x: torch.Tensor, vec: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        (mod,) = self.modulation(vec)
        qkv, mlp_in = self.linear1(mod.modulate(layer_norm_no_affine(x))).split(
            [3 * self.hidden_size, self.mlp_hidden], dim=-1)
        q, k, v = split_heads(qkv, self.num_heads)
        q, k = self.norm(q, k)
        attn = attention(q, k, v, cos, sin, key_mask)
        mlp_out = nn.functional.gelu(mlp_in, approximate="tanh")
        return x + mod.gate * self.linear2(torch.cat([attn, mlp_out], dim=-1))
