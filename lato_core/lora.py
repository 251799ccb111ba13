"""The released kohya-style LoRA (lora_unet_<module path with "." -> "_">) on the Step1X-Edit / LaTo DiT.

Each module's file entries are lora_down.weight (rank, in), lora_up.weight (out, rank) and alpha; the delta is
strength * alpha / rank * up @ down (alpha 0 means alpha = rank, as in kohya). As in the release, apply the LoRA
after landmark_in holds its base weights (lato_core.dit.load_landmark_in), so a landmark_in LoRA adds on top.
Order for low-memory runs: load -> load_landmark_in -> apply_lora -> memory.cast_for_storage -> BlockOffloader.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, NamedTuple

import torch
from torch import nn

from .dit.config import DiTConfig
from .dit.model import Step1XEditDiT
from .errors import FaceEditError

KOHYA_PREFIX = "lora_unet_"
PARTS = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}  # file suffix -> role
PEFT_ADAPTER = "lato_lora"
# Modules the release's merge never touches: their LoRA entries are skipped with a warning, not refused.
RELEASE_IGNORED = ("lora_unet_final_layer_", "lora_unet_connector_")
log = logging.getLogger(__name__)


class LoraError(FaceEditError):
    """A LoRA file or call that cannot be used; the message names the file and the key."""


class LoraWeights(NamedTuple):
    down: torch.Tensor  # (rank, in_features)
    up: torch.Tensor    # (out_features, rank)
    alpha: float

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def scale(self) -> float:
        return (self.alpha or self.rank) / self.rank


def kohya_name(module_path: str) -> str:
    return KOHYA_PREFIX + module_path.replace(".", "_")


def linear_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Module path -> (out_features, in_features) for every Linear of the model."""
    return {name: (m.out_features, m.in_features) for name, m in model.named_modules() if isinstance(m, nn.Linear)}


@lru_cache(maxsize=8)
def _table(config: DiTConfig) -> tuple[tuple[str, str, tuple[int, int]], ...]:
    with torch.device("meta"):
        shapes = linear_shapes(Step1XEditDiT(config))
    rows = tuple((kohya_name(path), path, shape) for path, shape in shapes.items())
    if len({row[0] for row in rows}) != len(rows):
        raise RuntimeError("two DiT modules map to the same kohya name")  # would make the table ambiguous
    return rows


def lora_key_table(config: DiTConfig | None = None) -> dict[str, str]:
    """THE key table: kohya module name -> DiT module path, one row per Linear of the DiT, e.g.
    lora_unet_double_blocks_0_img_attn_qkv -> double_blocks.0.img_attn.qkv, lora_unet_landmark_in -> landmark_in.
    Built from the model's own module list, so underscores inside names (img_attn) stay unambiguous."""
    return {name: path for name, path, _ in _table(config or DiTConfig.release())}


def _read_tensors(source) -> tuple[str, dict[str, torch.Tensor]]:
    if isinstance(source, Mapping):
        return "<state dict>", dict(source)
    name = os.fspath(source)
    if not os.path.isfile(name):
        raise LoraError(f"LoRA file not found: {name}")
    try:
        from safetensors import safe_open
        with safe_open(name, framework="pt", device="cpu") as handle:  # memory-mapped read
            return name, {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:
        raise LoraError(f"{name}: not a readable .safetensors LoRA (truncated or corrupt download?): {exc}") from exc


def load_kohya_lora(source: str | os.PathLike | Mapping[str, torch.Tensor],
                    config: DiTConfig | None = None) -> dict[str, LoraWeights]:
    """Read a kohya LoRA strictly -> {module path: LoraWeights(down, up, alpha)}. One LoraError lists every
    unknown key, missing part (down, up or alpha), rank mismatch and shape that does not fit the DiT.
    Entries for final_layer.* and connector.* are skipped with a warning naming them, as the release ignores them."""
    name, tensors = _read_tensors(source)
    table = {kohya: (path, shape) for kohya, path, shape in _table(config or DiTConfig.release())}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    problems: list[str] = []
    skipped = sorted(key for key in tensors if key.startswith(RELEASE_IGNORED))
    if skipped:
        log.warning("%s: skipped %d keys the LaTo release ignores too (final_layer.*, connector.*): %s", name,
                    len(skipped), ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else ""))
    for key, tensor in tensors.items():
        module, _, suffix = key.partition(".")
        if key.startswith(RELEASE_IGNORED):
            continue
        if suffix not in PARTS:
            problems.append(f"{key}: unknown entry (expected <module>.lora_down.weight, .lora_up.weight or .alpha)")
        elif module not in table:
            hint = " (text-encoder LoRAs are not supported)" if module.startswith("lora_te") else ""
            problems.append(f"{key}: no DiT Linear is named {module}{hint}")
        else:
            parts.setdefault(module, {})[PARTS[suffix]] = tensor
    lora: dict[str, LoraWeights] = {}
    for module, found in sorted(parts.items()):
        path, (out_features, in_features) = table[module]
        missing = [role for role in ("down", "up", "alpha") if role not in found]
        if missing:
            problems.append(f"{module}: missing {', '.join(missing)}")
            continue
        down, up, alpha = found["down"], found["up"], found["alpha"]
        if down.ndim != 2 or up.ndim != 2 or alpha.numel() != 1:
            problems.append(f"{module}: expected 2-D down/up and a scalar alpha, got down {list(down.shape)}, "
                            f"up {list(up.shape)}, alpha {list(alpha.shape)}")
        elif down.shape[0] != up.shape[1]:
            problems.append(f"{module}: rank mismatch, lora_down has rank {down.shape[0]}, lora_up {up.shape[1]}")
        elif (up.shape[0], down.shape[1]) != (out_features, in_features):
            problems.append(f"{module}: delta is {up.shape[0]}x{down.shape[1]} but {path} is "
                            f"{out_features}x{in_features}")
        else:
            lora[path] = LoraWeights(down, up, float(alpha.float()))
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise LoraError(f"{name}: not a kohya LoRA for this DiT:\n  {shown}")
    if not lora:
        raise LoraError(f"{name}: contains no lora_unet_* modules")
    return lora


def lora_delta(weights: LoraWeights, strength: float, device=None) -> torch.Tensor:
    """strength * alpha / rank * up @ down, in fp32."""
    up, down = weights.up.to(device, torch.float32), weights.down.to(device, torch.float32)
    return (strength * weights.scale) * (up @ down)


@dataclass
class LoraHandle:
    """What apply_lora changed; remove() undoes it (unmerge, or unwrap the peft layers)."""
    model: nn.Module
    lora: dict[str, LoraWeights]
    strength: float
    method: str
    originals: dict[str, torch.Tensor] = field(default_factory=dict)  # merge with keep_original: CPU copies
    active: bool = True

    @torch.no_grad()
    def remove(self) -> None:
        if not self.active:
            return
        for path, weights in self.lora.items():
            layer = self.model.get_submodule(path)
            if self.method == "peft":
                parent, _, child = path.rpartition(".")
                setattr(self.model.get_submodule(parent) if parent else self.model, child, layer.get_base_layer())
            elif path in self.originals:
                layer.weight.copy_(self.originals[path])
            else:
                weight = layer.weight
                weight.copy_((weight.float() - lora_delta(weights, self.strength, weight.device)).to(weight.dtype))
        if self.method == "peft":  # peft leaves its config on the model
            configs = getattr(self.model, "peft_config", {})
            configs.pop(PEFT_ADAPTER, None)
            if not configs and hasattr(self.model, "peft_config"):
                del self.model.peft_config
        self.active = False


def _check_targets(model: nn.Module, lora: Mapping[str, LoraWeights]) -> None:
    if "landmark_in" in lora and getattr(model, "landmark_in", None) is None:
        raise LoraError("the LoRA has a landmark_in part but the DiT has no landmark_in yet: load its base weights "
                        "first (lato_core.dit.load_landmark_in with landmark_in.pth), as the release does")
    for path, weights in lora.items():
        try:
            layer = model.get_submodule(path)
        except AttributeError:
            raise LoraError(f"{kohya_name(path)}: the DiT has no module {path}") from None
        if hasattr(layer, "base_layer"):
            raise LoraError(f"{path} already carries a peft LoRA: remove() the previous handle first")
        if not isinstance(layer, nn.Linear) or (layer.out_features, layer.in_features) != (
                weights.up.shape[0], weights.down.shape[1]):
            raise LoraError(f"{kohya_name(path)}: does not fit {path} ({layer})")


def _compute_dtype(layer: nn.Linear) -> torch.dtype:
    weight_dtype = layer.weight.dtype
    return getattr(layer, "compute_dtype", weight_dtype) if weight_dtype.itemsize == 1 else weight_dtype


@torch.no_grad()
def _merge(model: nn.Module, lora: Mapping[str, LoraWeights], strength: float, keep_original: bool) -> dict:
    originals = {}
    for path, weights in lora.items():
        weight = model.get_submodule(path).weight
        if weight.dtype.itemsize == 1:
            raise LoraError(f"{path} is stored in fp8: merge the LoRA before memory.cast_for_storage, "
                            "or use method='peft'")
        if keep_original:
            originals[path] = weight.detach().to("cpu", copy=True)
        weight.copy_((weight.float() + lora_delta(weights, strength, weight.device)).to(weight.dtype))
    return originals


@torch.no_grad()
def _inject_peft(model: nn.Module, lora: Mapping[str, LoraWeights], strength: float) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    exact = {re.escape(path): weights for path, weights in lora.items()}
    config = LoraConfig(
        r=next(iter(lora.values())).rank, lora_alpha=1.0, lora_dropout=0.0, bias="none", init_lora_weights=False,
        target_modules="^(" + "|".join(exact) + ")$", inference_mode=True,
        rank_pattern={key: w.rank for key, w in exact.items()},
        alpha_pattern={key: w.alpha or w.rank for key, w in exact.items()})  # scaling is overwritten below
    inject_adapter_in_model(config, model, adapter_name=PEFT_ADAPTER, low_cpu_mem_usage=True)
    for path, weights in lora.items():
        layer = model.get_submodule(path)
        base = layer.get_base_layer()
        device, dtype = base.weight.device, _compute_dtype(base)
        layer.lora_A[PEFT_ADAPTER].weight = nn.Parameter(weights.down.to(device, dtype), requires_grad=False)
        layer.lora_B[PEFT_ADAPTER].weight = nn.Parameter(weights.up.to(device, dtype), requires_grad=False)
        layer.scaling[PEFT_ADAPTER] = strength * weights.scale


def apply_lora(model: nn.Module, lora: Mapping[str, LoraWeights], strength: float = 1.0, method: str = "merge",
               keep_original: bool = False) -> LoraHandle:
    """Add the LoRA to the model in place and return a handle whose remove() undoes it.

    merge: W += strength * alpha/rank * up @ down, computed in fp32 and cast back to W's dtype; remove() subtracts
      the same delta (exact up to one rounding of W's dtype), or with keep_original=True restores CPU copies exactly.
    peft: wraps each target in a peft LoRA layer (lora_A = down, lora_B = up, scaling = strength * alpha/rank);
      the base weights stay untouched, so it also works on fp8-stored layers.
    """
    if method not in ("merge", "peft"):
        raise ValueError(f"method must be 'merge' or 'peft', not {method!r}")
    if not lora:
        raise LoraError("the LoRA is empty")
    _check_targets(model, lora)
    originals = {}
    if method == "merge":
        originals = _merge(model, lora, strength, keep_original)
    else:
        _inject_peft(model, lora, strength)
    return LoraHandle(model=model, lora=dict(lora), strength=strength, method=method, originals=originals)
