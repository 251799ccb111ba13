"""1-D building blocks of the landmark tokenizer; parameter names follow the released checkpoint."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock1d(nn.Module):
    """x + block(x), with block = [GroupNorm, SiLU, dilated Conv1d k3, GroupNorm, SiLU, Conv1d 1x1].

    Keys: block.{0,2,3,5}.*, plus conv_short.* (a 1x1 conv) only when the width changes.
    The sequence length is kept (padding = dilation).
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int, groups: int = 32, eps: float = 1e-6):
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, in_channels, eps=eps),
            nn.SiLU(),
            nn.Conv1d(in_channels, out_channels, kernel_size=3, padding=dilation, dilation=dilation),
            nn.GroupNorm(groups, out_channels, eps=eps),
            nn.SiLU(),
            nn.Conv1d(out_channels, out_channels, kernel_size=1),
        )
        if in_channels != out_channels:
            self.conv_short = nn.Conv1d(in_channels, out_channels, kernel_size=1)
        else:
            self.conv_short = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.conv_short is None else self.conv_short(x)
        return shortcut + self.block(x)


class AttnBlock1d(nn.Module):
    """Single-head self-attention over the sequence: x + proj_out(softmax(q^T k / sqrt(C)) v).

    q, k, v and proj_out are 1x1 convs on the GroupNorm-ed input (keys norm, q, k, v, proj_out).
    """

    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=eps)
        self.q = nn.Conv1d(channels, channels, kernel_size=1)
        self.k = nn.Conv1d(channels, channels, kernel_size=1)
        self.v = nn.Conv1d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        # (B, C, L) -> (B, 1, L, C): one head whose width is the full channel count.
        q, k, v = (proj(h).transpose(1, 2).unsqueeze(1) for proj in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v)  # default scale 1/sqrt(C)
        return x + self.proj_out(attended.squeeze(1).transpose(1, 2))


class ConvStack1d(nn.Module):
    """conv_in k3 -> resnet1 x N -> attn1 -> resnet2 (width change) -> resnet3 x N -> attn2 -> conv_out k3.

    The encoder is ConvStack1d(2, (low, high), code_dim); the decoder mirrors it with (high, low).
    """

    def __init__(self, in_channels: int, widths: tuple[int, int], out_channels: int, num_res_blocks: int,
                 dilation_of, groups: int = 32, eps: float = 1e-6):
        super().__init__()
        first, second = widths
        self.conv_in = nn.Conv1d(in_channels, first, kernel_size=3, padding=1)
        self.resnet1 = nn.ModuleList(
            ResBlock1d(first, first, dilation_of(first), groups, eps) for _ in range(num_res_blocks))
        self.attn1 = AttnBlock1d(first, groups, eps)
        self.resnet2 = ResBlock1d(first, second, dilation_of(second), groups, eps)
        self.resnet3 = nn.ModuleList(
            ResBlock1d(second, second, dilation_of(second), groups, eps) for _ in range(num_res_blocks))
        self.attn2 = AttnBlock1d(second, groups, eps)
        self.conv_out = nn.Conv1d(second, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.resnet1:
            x = block(x)
        x = self.resnet2(self.attn1(x))
        for block in self.resnet3:
            x = block(x)
        return self.conv_out(self.attn2(x))
