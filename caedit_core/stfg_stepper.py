"""The STFG part of a sampling run (ComfyUI-free): boundary region from recorded text attention, then one
stfg_guidance step through the model, whose weights ComfyUI created as inference tensors.

Memory: no weight is copied. ComfyUI loads models inside torch.inference_mode(), and autograd refuses to save
inference tensors for backward (checked in ComfyUI 0.3.75: every Linear/Conv/GroupNorm of a loaded UNet).
`autograd_views` puts, for the duration of one gradient pass, a normal tensor that *shares the storage* of each
inference weight into the module's parameter table (Tensor.set_ on the same storage; nothing is written through
it), and restores the originals after. The extra memory of a guided step is the activations kept for one backward
pass, which bench/bench_stfg.py reports.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .blend import latent_mask
from .stfg import STEP_RULES, boundary_region, stfg_guidance
from .text_attention import TextAttentionRecorder, mean_text_attention


def _normal_view(tensor: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(False):
        view = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
        return view.set_(tensor.untyped_storage(), tensor.storage_offset(), tensor.shape, tensor.stride())


@contextmanager
def autograd_views(module: torch.nn.Module):
    """Within the block, every inference-tensor parameter and buffer of `module` is replaced by a normal tensor on
    the same memory (zero copy), so autograd can differentiate through the module; yields how many were swapped."""
    swapped = []
    try:
        for owner in module.modules():
            for table in (owner._parameters, owner._buffers):
                for name, tensor in list(table.items()):
                    if tensor is not None and tensor.is_inference():
                        view = _normal_view(tensor.detach())
                        table[name] = torch.nn.Parameter(view, requires_grad=False) \
                            if isinstance(tensor, torch.nn.Parameter) else view
                        swapped.append((table, name, tensor))
        yield len(swapped)
    finally:
        for table, name, original in swapped:
            table[name] = original


class STFGStepper:
    """Per sampling run: the first guided step makes one no-grad pass to record text attention; each guided step
    then computes the boundary region from the latest recorded maps and runs stfg_guidance through `predict` with
    the model's weights as autograd views. mask (Bm, H, W) 1 = edit; sigma_range = (high, low) where guidance
    applies; tokens = index into the text tokens (text_attention.token_selection)."""

    def __init__(self, mask: torch.Tensor, strength: float, radius: float = 0.5, rule: str = "masked",
                 sigma_range: tuple[float, float] = (float("inf"), 0.0), recorder: TextAttentionRecorder | None = None,
                 step: str = "normalised", tokens: slice | list[int] | None = slice(1, None)):
        if step not in STEP_RULES:
            raise ValueError(f"step must be one of {STEP_RULES}")
        self.mask, self.strength, self.radius, self.rule, self.sigma_range = mask, strength, radius, rule, sigma_range
        self.step, self.tokens = step, tokens
        self.recorder = recorder or TextAttentionRecorder()
        self.reset()

    def reset(self, source: torch.Tensor | None = None) -> None:
        self.source, self.maps, self.last_loss, self.last_boundary, self.views = source, None, None, None, 0

    def recorded(self, predict, x, timestep):
        self.recorder.start()
        try:
            return predict(x, timestep)
        finally:
            self.maps = self.recorder.stop()

    def boundary(self, shape) -> torch.Tensor:
        b, _, h, w = shape
        m = latent_mask(self.mask, h, w)[:, 0]
        if not self.maps:
            return torch.zeros(b, h, w)
        attn = mean_text_attention(self.maps, h, w, self.tokens)
        region = boundary_region(attn, m.to(attn.device), self.rule)
        return region.expand(b, h, w) if region.shape[0] == 1 else region

    def active(self, timestep: torch.Tensor) -> bool:
        high, low = self.sigma_range
        return self.strength != 0 and self.source is not None and low <= float(timestep.reshape(-1)[0]) <= high

    def __call__(self, x: torch.Tensor, timestep: torch.Tensor, predict, model: torch.nn.Module) -> torch.Tensor:
        if not self.active(timestep):
            return predict(x, timestep)
        if not self.maps:
            self.recorded(predict, x, timestep)
        boundary = self.boundary(x.shape).to(x.device)

        def denoise(z):  # inside stfg_guidance: inference_mode(False) + enable_grad; timestep cloned to a normal tensor
            with autograd_views(model) as count:
                self.views = count
                return self.recorded(predict, z, timestep.clone())

        guided, self.last_loss = stfg_guidance(x, timestep, denoise, self.source, boundary, self.strength,
                                               step=self.step, radius=self.radius, return_loss=True)
        self.last_boundary = boundary
        return guided
