"""Step1X-Edit's Qwen connector: Qwen2.5-VL hidden states -> text tokens for txt_in and the pooled vector y.

Parameter names equal the release's connector.* keys (prefix removed), e.g. S.input_embedder.weight,
S.individual_token_refiner.blocks.0.self_attn_qkv.weight, global_proj_out.weight, scale_factor.

pooled(x, mask) = global_proj_out(masked_mean(x) * (1 + scale_factor))   # t-independent; the scale is cast
                                                                          # to the activations' dtype
tokens(x, t, mask): token refiner conditioned on c = t_embedder(1000 t) + c_embedder(masked_mean(x)), t being the
flow time in [0, 1] of the current step (the same 1000 factor as the DiT's time_in), so the tokens must be
recomputed at every sampling step.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..dit.layers import timestep_embedding
from ..checkpoint_check import check_layout, shapes_of, strip_key
from ..errors import ModelFileError

CONNECTOR_PREFIX = "connector."
TIME_FACTOR = 1000.0  # the refiner embeds 1000 t, like the DiT's time_in


@dataclass(frozen=True)
class ConnectorConfig:
    in_dim: int = 3584            # Qwen2.5-VL-7B hidden size
    hidden_size: int = 4096       # refiner width = DiT context_in_dim
    num_heads: int = 32
    depth: int = 2
    mlp_ratio: float = 4.0
    pooled_dim: int = 768         # DiT vec_in_dim
    timestep_freq_dim: int = 256

    @classmethod
    def release(cls) -> "ConnectorConfig":
        return cls()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden: int, freq_dim: int, operations=nn):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(operations.Linear(freq_dim, hidden), nn.SiLU(), operations.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """dtype: the activations' (weights may be stored narrower and cast per layer)."""
        return self.mlp(timestep_embedding(t, self.freq_dim, TIME_FACTOR).to(dtype))


class TextProjection(nn.Module):
    def __init__(self, in_dim: int, hidden: int, operations=nn):
        super().__init__()
        self.linear_1 = operations.Linear(in_dim, hidden)
        self.act_1 = nn.SiLU()
        self.linear_2 = operations.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act_1(self.linear_1(x)))


class RefinerMLP(nn.Module):
    def __init__(self, hidden: int, mlp_hidden: int, operations=nn):
        super().__init__()
        self.fc1 = operations.Linear(hidden, mlp_hidden)
        self.act = nn.SiLU()
        self.fc2 = operations.Linear(mlp_hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class IndividualTokenRefinerBlock(nn.Module):
    """Pre-LN self-attention + MLP, each residual scaled by a gate from c (adaLN, gates only; no QK norm)."""

    def __init__(self, hidden: int, num_heads: int, mlp_ratio: float, operations=nn):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = operations.LayerNorm(hidden, eps=1e-6)
        self.self_attn_qkv = operations.Linear(hidden, 3 * hidden)
        self.self_attn_proj = operations.Linear(hidden, hidden)
        self.norm2 = operations.LayerNorm(hidden, eps=1e-6)
        self.mlp = RefinerMLP(hidden, int(hidden * mlp_ratio), operations)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), operations.Linear(hidden, 2 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        gate_attn, gate_mlp = self.adaLN_modulation(c).chunk(2, dim=-1)
        batch, length, _ = x.shape
        q, k, v = self.self_attn_qkv(self.norm1(x)).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + gate_attn[:, None] * self.self_attn_proj(attn.transpose(1, 2).reshape(batch, length, -1))
        return x + gate_mlp[:, None] * self.mlp(self.norm2(x))


class IndividualTokenRefiner(nn.Module):
    def __init__(self, hidden: int, num_heads: int, depth: int, mlp_ratio: float, operations=nn):
        super().__init__()
        self.blocks = nn.ModuleList(IndividualTokenRefinerBlock(hidden, num_heads, mlp_ratio, operations)
                                    for _ in range(depth))

    def forward(self, x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attn_mask = None
        if mask is not None:
            valid = mask.to(device=x.device, dtype=torch.bool)
            attn_mask = (valid[:, None, :, None] & valid[:, None, None, :]).clone()
            attn_mask[..., 0] = True  # every query (padding too) may attend to key 0: no empty softmax rows
        for block in self.blocks:
            x = block(x, c, attn_mask)
        return x


class SingleTokenRefiner(nn.Module):
    def __init__(self, cfg: ConnectorConfig, operations=nn):
        super().__init__()
        self.input_embedder = operations.Linear(cfg.in_dim, cfg.hidden_size)
        self.t_embedder = TimestepEmbedder(cfg.hidden_size, cfg.timestep_freq_dim, operations)
        self.c_embedder = TextProjection(cfg.in_dim, cfg.hidden_size, operations)
        self.individual_token_refiner = IndividualTokenRefiner(cfg.hidden_size, cfg.num_heads, cfg.depth,
                                                               cfg.mlp_ratio, operations)

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        context = x.mean(dim=1) if mask is None else masked_mean(x, mask)
        c = self.t_embedder(t, x.dtype) + self.c_embedder(context)
        return self.individual_token_refiner(self.input_embedder(x), c, mask)


class Qwen2Connector(nn.Module):
    def __init__(self, config: ConnectorConfig | None = None, operations=nn):
        super().__init__()
        self.config = cfg = config or ConnectorConfig.release()
        self.S = SingleTokenRefiner(cfg, operations)
        self.global_proj_out = operations.Linear(cfg.in_dim, cfg.pooled_dim)
        self.scale_factor = nn.Parameter(torch.full((1,), -(1 - 0.09)))  # release init; the checkpoint overrides

    compute_dtype: torch.dtype | None = None   # set when weights are stored narrower (fp8) than computed

    @property
    def dtype(self) -> torch.dtype:
        """The activations' dtype: compute_dtype, else the weights' own."""
        return self.compute_dtype or self.global_proj_out.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.global_proj_out.weight.device

    def pooled(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, in_dim), (B, L) -> y (B, pooled_dim). The scale is cast to x's dtype, as in the release."""
        x = x.to(device=self.device, dtype=self.dtype)
        scale = 1 + self.scale_factor.to(x.dtype)
        return self.global_proj_out(masked_mean(x, mask.to(x.device)) * scale)

    def tokens(self, x: torch.Tensor, t: torch.Tensor | float, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, in_dim), flow time t in [0, 1] (scalar or (B,)), (B, L) -> (B, L, hidden_size) for txt_in."""
        x = x.to(device=self.device, dtype=self.dtype)
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device).reshape(-1).expand(x.shape[0])
        return self.S(x, t, mask.to(x.device))

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, mask: torch.Tensor):
        return self.tokens(x, t, mask), self.pooled(x, mask)


def _connector_keys(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes; if any connector.* key exists keep only those (a whole DiT file), prefix removed."""
    state = {}
    for key, value in raw.items():
        state[strip_key(key)] = value
    if any(k.startswith(CONNECTOR_PREFIX) for k in state):
        state = {k[len(CONNECTOR_PREFIX):]: v for k, v in state.items() if k.startswith(CONNECTOR_PREFIX)}
    return state


def load_connector(source: Mapping[str, torch.Tensor] | str | os.PathLike, dtype: torch.dtype = torch.bfloat16,
                   device: torch.device | str = "cpu", config: ConnectorConfig | None = None) -> Qwen2Connector:
    """Strictly load a connector from LoadedDiT.connector_state, a dict with connector.* keys, or a .safetensors
    file (a whole DiT file works: only connector.* is read)."""
    name = "<state dict>"
    if not isinstance(source, Mapping):
        name = os.fspath(source)
        if not os.path.isfile(name):
            raise ModelFileError(f"connector weights not found: {name}")
        from safetensors.torch import load_file
        try:
            source = load_file(name)
        except Exception:  # safetensors raises its own error types on bad headers
            raise ModelFileError(f"{name} is not a readable .safetensors file (truncated or corrupt): download "
                                 "it again.") from None
    state = _connector_keys(source)
    cfg = config or ConnectorConfig.release()
    with torch.device("meta"):
        connector = Qwen2Connector(cfg)
    check_layout(name, shapes_of(state), shapes_of(connector.state_dict()),
                 f"the Step1X-Edit connector (in {cfg.in_dim}, hidden {cfg.hidden_size}, depth {cfg.depth})",
                 "Is this a Step1X-Edit/LaTo DiT file? Use lato/lato.safetensors of the LaTo release.")
    connector.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state.items()}, strict=True,
                              assign=True)
    return connector.eval().requires_grad_(False)
