"""The loaded LaTo model as the nodes pass it around: DiT + connector, weight storage, offload and LoRAs.

LoRAs follow ComfyUI's clone() idea: with_lora() returns a new LaToModel sharing the modules and adding to a
patch list; the patches are applied (as peft layers) only inside `ready()` and removed on leaving it, so two
branches of a workflow with different LoRAs never see each other's weights.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, replace

import torch

from ..dit.loading import load_dit, load_landmark_in
from ..errors import ModelFileError
from ..dit.model import Step1XEditDiT
from ..lora import LoraWeights, apply_lora, load_kohya_lora
from ..memory import BlockOffloader, cast_for_storage
from ..text.connector import Qwen2Connector, load_connector
from .files import inspect_lato_file

STORAGES = ("bf16", "fp8_e4m3", "fp32")
OFFLOADS = ("none", "blocks")


@dataclass
class LaToModel:
    dit: Step1XEditDiT
    connector: Qwen2Connector
    storage: str = "bf16"
    offload: str = "none"
    compute_dtype: torch.dtype = torch.bfloat16
    loras: tuple[tuple[str, dict[str, LoraWeights], float], ...] = ()
    source: str = ""
    notes: list[str] = field(default_factory=list)
    null_tokens: torch.Tensor | None = None   # learned unconditional landmark tokens, when the checkpoint has them

    def with_lora(self, path: str, strength: float) -> "LaToModel":
        lora = load_kohya_lora(path, self.dit.config)
        return replace(self, loras=self.loras + ((os.path.basename(path), lora, float(strength)),))

    @contextlib.contextmanager
    def ready(self, device: torch.device | str, offload_device: torch.device | str = "cpu"):
        """The DiT and connector on `device` with this model's LoRAs applied; back on offload_device afterwards."""
        device, offload_device = torch.device(device), torch.device(offload_device)
        # peft layers leave the base weights alone: no copy of 12B weights to undo a merge, and fp8 works too.
        handles = [apply_lora(self.dit, lora, strength, method="peft") for _, lora, strength in self.loras if strength]
        offloader = None
        try:
            self.connector.to(device)
            if self.offload == "blocks" and device != offload_device:
                offloader = BlockOffloader(self.dit, device, storage_device=offload_device)
            else:
                self.dit.to(device)
            yield self.dit
        finally:
            if offloader is not None:
                offloader.remove()
            for handle in reversed(handles):
                handle.remove()
            self.dit.to(offload_device)
            self.connector.to(offload_device)


def load_lato_model(path: str | os.PathLike, landmark_adapter: str | os.PathLike | None = None,
                    storage: str = "bf16", offload: str = "none", compute_dtype: torch.dtype = torch.bfloat16,
                    device: torch.device | str = "cpu") -> LaToModel:
    """Load lato.safetensors (Step1X-Edit DiT + connector.*, maybe landmark_in.*) and the adapter file if the
    checkpoint lacks landmark_in (landmark_in.pth from the release code, read with weights_only=True)."""
    if storage not in STORAGES or offload not in OFFLOADS:
        raise ModelFileError(f"storage must be one of {STORAGES} and offload one of {OFFLOADS}.")
    path = os.fspath(path)
    spec = inspect_lato_file(path, landmark_adapter)
    load_dtype = compute_dtype if storage != "fp32" else torch.float32
    loaded = load_dit(path, dtype=load_dtype, device=device, config=spec.dit)
    notes = []
    if spec.adapter is not None:   # the user asked for this adapter: it wins over one inside the file
        load_landmark_in(loaded.model, spec.adapter, spec.adapter_name)
        verb = "replaced by" if spec.has_landmark_in else "from"
        notes.append(f"landmark_in {verb} {os.path.basename(spec.adapter_name)}")
    connector = load_connector(loaded.connector_state, dtype=torch.float32 if storage == "fp32" else compute_dtype,
                               device=device, config=spec.connector)
    if storage == "fp8_e4m3":
        cast_for_storage(loaded.model, "fp8_e4m3", compute_dtype=compute_dtype)
    if loaded.null_tokens is not None:
        notes.append("learned null landmark tokens for landmark-aware CFG")
    return LaToModel(loaded.model.eval().requires_grad_(False), connector.eval().requires_grad_(False), storage,
                     offload, load_dtype, source=path, notes=notes, null_tokens=loaded.null_tokens)
