"""Loading Step1X-Edit / LaTo DiT weights in the BFL FLUX key layout, with strict, readable validation.

The model's parameter names ARE the BFL keys, so the mapping is the identity after stripping a wrapper prefix;
BFL_LAYOUT below is the single table of expected keys and shapes. connector.* (the Qwen connector) is returned
separately for its own module; landmark_in.* is optional (the release may ship it as landmark_in.pth instead).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch
from torch import nn

from ..checkpoint_check import COMMON_WRAPPERS, check_layout, strip_key
from ..errors import ModelFileError
from .config import DiTConfig
from .model import Step1XEditDiT

CONNECTOR_PREFIX = "connector."
LANDMARK_PREFIX = "landmark_in."
# Learned unconditional landmark tokens (the paper's landmark-aware CFG): (L, landmark_dim) or (landmark_dim,).
# The release has none; a fine-tuned checkpoint may carry them under this key.
NULL_TOKENS_KEY = "landmark_null_tokens"

# Module path (key without .weight/.bias/.scale), kind, output dim, input dim.
# Dims: H hidden, M mlp hidden, D head dim, C in/out channels, T timestep embedding, Y vec_in, X context_in,
# L landmark_dim; "3H+M" means 3*H + M. {i} repeats over the double or single blocks.
BFL_LAYOUT: tuple[tuple[str, str, str, str | None], ...] = (
    ("img_in",                                   "linear", "H",    "C"),
    ("time_in.in_layer",                         "linear", "H",    "T"),
    ("time_in.out_layer",                        "linear", "H",    "H"),
    ("vector_in.in_layer",                       "linear", "H",    "Y"),
    ("vector_in.out_layer",                      "linear", "H",    "H"),
    ("guidance_in.in_layer",                     "guidance", "H",  "T"),   # only with guidance_embed (FLUX dev)
    ("guidance_in.out_layer",                    "guidance", "H",  "H"),
    ("txt_in",                                   "linear", "H",    "X"),
    ("double_blocks.{i}.img_mod.lin",            "linear", "6H",   "H"),
    ("double_blocks.{i}.img_attn.qkv",           "qkv",    "3H",   "H"),   # bias iff qkv_bias
    ("double_blocks.{i}.img_attn.norm.query_norm", "norm", "D",    None),
    ("double_blocks.{i}.img_attn.norm.key_norm", "norm",   "D",    None),
    ("double_blocks.{i}.img_attn.proj",          "linear", "H",    "H"),
    ("double_blocks.{i}.img_mlp.0",              "linear", "M",    "H"),
    ("double_blocks.{i}.img_mlp.2",              "linear", "H",    "M"),
    ("double_blocks.{i}.txt_mod.lin",            "linear", "6H",   "H"),
    ("double_blocks.{i}.txt_attn.qkv",           "qkv",    "3H",   "H"),
    ("double_blocks.{i}.txt_attn.norm.query_norm", "norm", "D",    None),
    ("double_blocks.{i}.txt_attn.norm.key_norm", "norm",   "D",    None),
    ("double_blocks.{i}.txt_attn.proj",          "linear", "H",    "H"),
    ("double_blocks.{i}.txt_mlp.0",              "linear", "M",    "H"),
    ("double_blocks.{i}.txt_mlp.2",              "linear", "H",    "M"),
    ("single_blocks.{i}.linear1",                "linear", "3H+M", "H"),   # rows: q, k, v, mlp_in
    ("single_blocks.{i}.linear2",                "linear", "H",    "H+M"),
    ("single_blocks.{i}.norm.query_norm",        "norm",   "D",    None),
    ("single_blocks.{i}.norm.key_norm",          "norm",   "D",    None),
    ("single_blocks.{i}.modulation.lin",         "linear", "3H",   "H"),
    ("final_layer.linear",                       "linear", "C",    "H"),
    ("final_layer.adaLN_modulation.1",           "linear", "2H",   "H"),   # rows: shift, scale
    ("landmark_in",                              "landmark", "H",  "L"),   # optional, LaTo adapter
)


@dataclass
class LoadedDiT:
    model: Step1XEditDiT
    kind: str                                   # detect_checkpoint_kind of the file
    has_landmark_in: bool                       # False: call load_landmark_in before passing landmark tokens
    connector_state: dict[str, torch.Tensor] = field(default_factory=dict)  # connector.* with the prefix removed
    source: str = ""
    null_tokens: torch.Tensor | None = None     # NULL_TOKENS_KEY when the file has it


def _dim(expr: str, cfg: DiTConfig) -> int:
    dims = {"H": cfg.hidden_size, "M": cfg.mlp_hidden, "D": cfg.head_dim, "C": cfg.in_channels,
            "T": cfg.timestep_embed_dim, "Y": cfg.vec_in_dim, "X": cfg.context_in_dim, "L": cfg.landmark_dim or 0}
    total = 0
    for term in expr.split("+"):
        factor, symbol = re.fullmatch(r"(\d*)([A-Z])", term).groups()
        total += int(factor or 1) * dims[symbol]
    return total


def expected_shapes(cfg: DiTConfig, with_landmark_in: bool = True) -> dict[str, tuple[int, ...]]:
    """Every BFL key the config needs, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path, kind, out_dim, in_dim in BFL_LAYOUT:
        if (kind == "guidance" and not cfg.guidance_embed) or (
                kind == "landmark" and not (with_landmark_in and cfg.landmark_dim)):
            continue
        count = cfg.depth if path.startswith("double_blocks") else cfg.depth_single if "{i}" in path else 1
        for i in range(count):
            key = path.format(i=i)
            if kind == "norm":
                shapes[f"{key}.scale"] = (_dim(out_dim, cfg),)
                continue
            shapes[f"{key}.weight"] = (_dim(out_dim, cfg), _dim(in_dim, cfg))
            if kind != "qkv" or cfg.qkv_bias:
                shapes[f"{key}.bias"] = (_dim(out_dim, cfg),)
    return shapes


def strip_wrapper_prefix(key: str) -> str:
    return strip_key(key, COMMON_WRAPPERS)


def detect_checkpoint_kind(keys: Iterable[str]) -> str:
    """"step1x_edit" | "flux" | "unknown" from key names alone.

    Step1X-Edit's DiT has exactly FLUX.1-schnell's shapes (the source image is concatenated along the sequence,
    not the channels; img_in stays 64 wide), so only connector.* or landmark_in.* mark a Step1X-Edit / LaTo file.
    A FLUX-layout file without them is "flux" (guidance_in.* marks FLUX dev / Kontext).
    """
    keys = {strip_wrapper_prefix(k) for k in keys}
    if "img_in.weight" not in keys or not any(k.startswith("double_blocks.") for k in keys):
        return "unknown"
    has_guidance = any(k.startswith("guidance_in.") for k in keys)
    if any(k.startswith((CONNECTOR_PREFIX, LANDMARK_PREFIX)) for k in keys):
        return "unknown" if has_guidance else "step1x_edit"
    return "flux"


class _TensorSource:
    """Uniform read access to a safetensors file (memory-mapped) or an in-memory state dict."""

    def __init__(self, source: str | os.PathLike | Mapping[str, torch.Tensor]):
        self._handle = None
        if isinstance(source, Mapping):
            self.name = "<state dict>"
            self._tensors = {strip_wrapper_prefix(k): v for k, v in source.items()}
            self.shapes = {k: tuple(v.shape) for k, v in self._tensors.items()}
            return
        self.name = os.fspath(source)
        if not os.path.isfile(self.name):
            raise ModelFileError(f"DiT checkpoint not found: {self.name}")
        try:
            from safetensors import safe_open
            self._handle = safe_open(self.name, framework="pt", device="cpu")
            self._names = {strip_wrapper_prefix(k): k for k in self._handle.keys()}
            self.shapes = {k: tuple(self._handle.get_slice(raw).get_shape()) for k, raw in self._names.items()}
        except Exception as exc:  # header errors: truncated or not a safetensors file
            raise ModelFileError(f"{self.name}: not a readable .safetensors file (truncated or corrupt "
                                  f"download?): {exc}") from exc

    def close(self) -> None:
        if self._handle is not None:
            self._handle.__exit__(None, None, None)
            self._handle = None

    def get(self, key: str) -> torch.Tensor:
        if self._handle is None:
            return self._tensors[key]
        try:
            return self._handle.get_tensor(self._names[key])
        except Exception as exc:
            raise ModelFileError(f"{self.name}: cannot read tensor {key}: {exc}") from exc


def validate_keys(name: str, shapes: Mapping[str, tuple[int, ...]], cfg: DiTConfig) -> bool:
    """Raise one ModelFileError listing missing / unexpected / mis-shaped keys. Returns has_landmark_in."""
    dit_shapes = {k: s for k, s in shapes.items() if not k.startswith(CONNECTOR_PREFIX) and k != NULL_TOKENS_KEY}
    has_landmark_in = any(k.startswith(LANDMARK_PREFIX) for k in dit_shapes)
    hints = []
    if detect_checkpoint_kind(shapes) == "flux" and any(k.startswith("guidance_in.") for k in shapes):
        hints.append("  It looks like a plain FLUX checkpoint (has guidance_in.*), not Step1X-Edit or LaTo.")
    check_layout(name, dit_shapes, expected_shapes(cfg, with_landmark_in=has_landmark_in),
                 f"the Step1X-Edit/LaTo DiT layout (hidden {cfg.hidden_size}, {cfg.depth} double + "
                 f"{cfg.depth_single} single blocks)",
                 "Use lato/lato.safetensors of the LaTo release in models/diffusion_models/.", hints)
    return has_landmark_in


def load_dit(source: str | os.PathLike | Mapping[str, torch.Tensor], dtype: torch.dtype = torch.bfloat16,
             device: torch.device | str = "cpu", config: DiTConfig | None = None) -> LoadedDiT:
    """Validate, then build the model on the meta device and assign the file's tensors (no double allocation)."""
    cfg = config or DiTConfig.release()
    tensors = _TensorSource(source)
    try:
        has_landmark_in = validate_keys(tensors.name, tensors.shapes, cfg)
        with torch.device("meta"):
            model = Step1XEditDiT(cfg)
        if not has_landmark_in:
            model.landmark_in = None
        state = {k: tensors.get(k).to(device=device, dtype=dtype) for k in model.state_dict()}
        model.load_state_dict(state, strict=True, assign=True)
        connector = {k[len(CONNECTOR_PREFIX):]: tensors.get(k).to(device=device, dtype=dtype)
                     for k in tensors.shapes if k.startswith(CONNECTOR_PREFIX)}
        null_tokens = tensors.get(NULL_TOKENS_KEY).to(device=device, dtype=dtype) if NULL_TOKENS_KEY in tensors.shapes else None
    finally:
        tensors.close()
    model.eval().requires_grad_(False)
    return LoadedDiT(model=model, kind=detect_checkpoint_kind(tensors.shapes), has_landmark_in=has_landmark_in,
                     connector_state=connector, source=tensors.name, null_tokens=null_tokens)


def read_adapter_file(name: str) -> dict[str, torch.Tensor]:
    """{key: tensor} from landmark_in.pth (a pickle, read with weights_only=True) or a .safetensors file."""
    where = f"{name} (landmark adapter, models/lato/)"
    if not os.path.isfile(name):
        raise ModelFileError(f"{where} not found: put landmark_in.pth from the LaTo code release there.")
    if os.path.getsize(name) == 0:
        raise ModelFileError(f"{where} is empty (0 bytes): the download failed; get landmark_in.pth again.")
    if name.endswith((".safetensors", ".sft")):
        try:
            from safetensors.torch import load_file
            return load_file(name)
        except Exception:  # safetensors raises its own error types on bad headers
            raise ModelFileError(f"{where} is not a readable .safetensors file (truncated or corrupt): download "
                                 "it again, or repack landmark_in.pth with `python -m lato_core.repack`.") from None
    try:
        raw = torch.load(name, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = "it holds code or objects other than tensors, which are never run" if "weights_only" in str(exc) \
            or "Unsupported global" in str(exc) else "it is not a readable torch file (truncated or corrupt)"
        raise ModelFileError(f"{where} was refused: {reason}. Use the landmark_in.pth of the LaTo code release "
                             "(a dict with 'weight' and 'bias') or its safetensors repack.") from None
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ModelFileError(f"{where} holds a {type(raw).__name__}, not a dict of tensors {{'weight', 'bias'}}: "
                             "use the landmark_in.pth of the LaTo code release.")
    return dict(raw)


def adapter_state(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{weight, bias} of an adapter file or dict, with or without wrapper or `landmark_in.` prefixes."""
    return {strip_wrapper_prefix(k).removeprefix(LANDMARK_PREFIX): v for k, v in raw.items()}


def check_adapter(state: Mapping[str, torch.Tensor], cfg: DiTConfig, name: str) -> None:
    """Raise a ModelFileError naming the adapter file unless it is Linear(landmark_dim -> hidden) of `cfg`."""
    if not cfg.landmark_dim:
        raise ModelFileError(f"{name}: this DiT config has no landmark adapter (landmark_dim is None)")
    want = {"weight": (cfg.hidden_size, cfg.landmark_dim), "bias": (cfg.hidden_size,)}
    check_layout(name, {k: tuple(v.shape) for k, v in state.items()}, want,
                 f"the landmark adapter of this DiT (Linear {cfg.landmark_dim} -> {cfg.hidden_size})",
                 "Use the landmark_in.pth that belongs to this LaTo checkpoint.")


def load_landmark_in(model: Step1XEditDiT, source: str | os.PathLike | Mapping[str, torch.Tensor],
                     name: str | None = None) -> None:
    """Install landmark_in from landmark_in.pth ({weight, bias}; read with weights_only=True), a .safetensors
    file, or a dict (`name`: its file, for messages), with or without the `landmark_in.` prefix. Uses the
    model's dtype and device."""
    name = name or ("<state dict>" if isinstance(source, Mapping) else os.fspath(source))
    state = adapter_state(dict(source) if isinstance(source, Mapping) else read_adapter_file(name))
    cfg = model.config
    check_adapter(state, cfg, name)
    layer = nn.Linear(cfg.landmark_dim, cfg.hidden_size, device=model.img_in.weight.device, dtype=model.dtype)
    with torch.no_grad():
        layer.weight.copy_(state["weight"])
        layer.bias.copy_(state["bias"])
    model.landmark_in = layer.requires_grad_(False)
