"""Fitting the 12B DiT on users' GPUs: bf16 storage (default), fp8 storage with per-layer upcast, block-wise offload.

fp8 (e4m3) applies to the Linear weights inside double_blocks / single_blocks (over 99.8% of the weights); each keeps
one fp32 scale (amax / 448) and is upcast to the compute dtype inside its own forward only. Embedders, final_layer,
landmark_in, biases and norm scales stay in the compute dtype (model.dtype follows img_in, which stays bf16).
BlockOffloader keeps the blocks on the CPU and lends each one to the GPU for its forward.
"""
from __future__ import annotations

from collections import deque
from functools import partial

import torch
from torch import nn

from .dit.config import DiTConfig
from .dit.model import Step1XEditDiT

STORAGE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp8_e4m3": torch.float8_e4m3fn}
FP8_MAX = torch.finfo(torch.float8_e4m3fn).max  # 448
BLOCK_LISTS = ("double_blocks", "single_blocks")


class Fp8Linear(nn.Linear):
    """Linear whose weight is float8_e4m3fn times one fp32 scale; upcast to compute_dtype only during forward."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 compute_dtype: torch.dtype = torch.bfloat16, device=None):
        nn.Module.__init__(self)  # skip nn.Linear's full-precision allocation
        self.in_features, self.out_features, self.compute_dtype = in_features, out_features, compute_dtype
        self.weight = nn.Parameter(torch.zeros(out_features, in_features, dtype=torch.float8_e4m3fn, device=device),
                                   requires_grad=False)
        self.register_buffer("weight_scale", torch.ones((), dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=compute_dtype, device=device),
                                 requires_grad=False) if bias else None

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, compute_dtype: torch.dtype = torch.bfloat16) -> "Fp8Linear":
        weight = linear.weight.detach().float()
        scale = weight.abs().amax().clamp(min=1e-12) / FP8_MAX
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, compute_dtype, device="meta")
        layer.weight = nn.Parameter((weight / scale).to(torch.float8_e4m3fn), requires_grad=False)
        layer.weight_scale = scale
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.detach().to(compute_dtype), requires_grad=False)
        return layer

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = dtype or self.compute_dtype
        return (self.weight.to(torch.float32) * self.weight_scale).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # temporary upcast of this layer only; the scale is applied to the (smaller) output
        out = nn.functional.linear(x.to(self.compute_dtype), self.weight.to(self.compute_dtype))
        out = out * self.weight_scale.to(self.compute_dtype)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, storage=float8_e4m3fn, compute_dtype={self.compute_dtype}"


def _in_block(path: str) -> bool:
    return path.startswith(tuple(f"{name}." for name in BLOCK_LISTS))


def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


@torch.no_grad()
def cast_for_storage(model: nn.Module, storage: str = "bf16", compute_dtype: torch.dtype = torch.bfloat16
                     ) -> nn.Module:
    """Store the weights as "bf16" (default), "fp32" or "fp8_e4m3" (block Linears in fp8, upcast per layer in
    compute_dtype, the rest in compute_dtype). In place; returns the model. fp8 -> bf16/fp32 dequantizes (lossy)."""
    if storage not in STORAGE_DTYPES:
        raise ValueError(f"storage must be one of {sorted(STORAGE_DTYPES)}, not {storage!r}")
    if storage != "fp8_e4m3":
        for path, module in list(model.named_modules()):
            if isinstance(module, Fp8Linear):
                plain = nn.Linear(module.in_features, module.out_features, module.bias is not None, device="meta")
                plain.weight = nn.Parameter(module.dequantized_weight(torch.float32), requires_grad=False)
                plain.bias = module.bias
                _replace(model, path, plain)
        return model.to(STORAGE_DTYPES[storage])
    for path, module in list(model.named_modules()):
        if isinstance(module, Fp8Linear):
            module.compute_dtype = compute_dtype
        elif type(module) is nn.Linear and _in_block(path) and ".lora_" not in path:  # not peft's lora_A / lora_B
            _replace(model, path, Fp8Linear.from_linear(module, compute_dtype))
    for module in model.modules():  # everything else in the compute dtype
        for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            if tensor.is_floating_point() and tensor.dtype.itemsize > 1 and name != "weight_scale":
                tensor.data = tensor.data.to(compute_dtype)
    return model


def estimate_weight_bytes(config: DiTConfig, storage: str = "bf16", compute_dtype: torch.dtype = torch.bfloat16
                          ) -> int:
    """Bytes of DiT weights (incl. landmark_in when config.landmark_dim) as cast_for_storage would store them.
    Counted from a meta-device model, so nothing is allocated."""
    if storage not in STORAGE_DTYPES:
        raise ValueError(f"storage must be one of {sorted(STORAGE_DTYPES)}, not {storage!r}")
    other_bytes = STORAGE_DTYPES[storage].itemsize if storage != "fp8_e4m3" else compute_dtype.itemsize
    with torch.device("meta"):
        model = Step1XEditDiT(config)
    total = 0
    for path, module in model.named_modules():
        fp8 = storage == "fp8_e4m3" and type(module) is nn.Linear and _in_block(path)
        for name, param in module.named_parameters(recurse=False):
            if fp8 and name == "weight":
                total += param.numel() + 4  # one byte per weight plus the fp32 scale
            else:
                total += param.numel() * other_bytes
    return total


class BlockOffloader:
    """Keeps double/single blocks on storage_device (CPU) and lends each to `device` for its own forward.

    Other modules (embedders, final_layer, landmark_in) move to `device` and stay. A forward pre-hook copies the
    block's tensors to `device`; the post-hook points them back at the untouched storage copies (no copy back).
    Build it last (after apply_lora / cast_for_storage). remove() drops the hooks; blocks stay on storage_device.
    """

    def __init__(self, model: Step1XEditDiT, device: torch.device | str, storage_device: torch.device | str = "cpu",
                 pin_memory: bool = False):
        self.model = model
        self.device, self.storage_device = torch.device(device), torch.device(storage_device)
        self.blocks = {f"{list_name}.{i}": block for list_name in BLOCK_LISTS
                       for i, block in enumerate(getattr(model, list_name))}
        for name, child in model.named_children():
            if name not in BLOCK_LISTS:
                child.to(self.device)
        for block in self.blocks.values():
            block.to(self.storage_device)
            if pin_memory and self.device.type == "cuda":  # faster, asynchronous host-to-device copies
                for tensor in self._tensors(block):
                    tensor.data = tensor.data.pin_memory()
        self.resident: set[str] = set()              # blocks currently on `device`
        self.events: deque[tuple[str, str]] = deque(maxlen=4 * len(self.blocks))  # ("load" | "offload", block)
        self._storage: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._hooks = []
        for name, block in self.blocks.items():
            self._hooks.append(block.register_forward_pre_hook(partial(self._load, name)))
            self._hooks.append(block.register_forward_hook(partial(self._offload, name), always_call=True))

    @staticmethod
    def _tensors(block: nn.Module) -> list[torch.Tensor]:
        return list(block.parameters()) + list(block.buffers())

    def _load(self, name: str, block: nn.Module, args) -> None:
        staged = []
        for tensor in self._tensors(block):  # read at call time: picks up LoRA layers added later
            stored = tensor.data
            tensor.data = stored.to(self.device, non_blocking=True)
            staged.append((tensor, stored))
        self._storage[name] = staged
        self.resident.add(name)
        self.events.append(("load", name))

    def _offload(self, name: str, block: nn.Module, args, output) -> None:
        for tensor, stored in self._storage.pop(name, []):
            tensor.data = stored  # drop the device copy; weights did not change during forward
        self.resident.discard(name)
        self.events.append(("offload", name))

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for name in list(self._storage):
            self._offload(name, self.blocks[name], (), None)

    def __enter__(self) -> "BlockOffloader":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
