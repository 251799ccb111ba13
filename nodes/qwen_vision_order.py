"""Image tokens in raster order from core's Qwen2.5-VL vision tower, for the length of one encode.

The vision tower groups patches into attention windows and, in transformers (and so in the release), puts the
merged tokens back in raster order before the language model sees them (reverse_indices = argsort(window_index)).
ComfyUI 0.3.75's comfy/text_encoders/qwen_vl.py skips that step, so image tokens reach the language model in window
order, under M-RoPE positions meant for raster order; later ComfyUI versions added it. Against transformers on the
same tiny weights this moves LaTo's hidden states by up to 5 (tests/test_core_qwen_parity.py). While LaTo Text
Encode runs, a tower that lacks the step gets it as an instance-level wrapper, removed afterwards: the class, other
CLIP users and a core that already has the step are left alone.
"""
from __future__ import annotations

import functools
import inspect
import logging
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)   # reads the source file once per class, not once per encode
def restores_raster_order(tower_class) -> bool | None:
    """Whether this core's vision tower already undoes its window order (None: its source cannot be read)."""
    try:
        return "argsort" in inspect.getsource(tower_class.forward)
    except (OSError, TypeError):
        return None


def vision_towers(clip) -> list[torch.nn.Module]:
    from comfy.text_encoders.qwen_vl import Qwen2VLVisionTransformer

    return [m for m in clip.cond_stage_model.modules() if isinstance(m, Qwen2VLVisionTransformer)]


@contextmanager
def image_tokens_in_raster_order(clip):
    found = {tower: restores_raster_order(type(tower)) for tower in vision_towers(clip)}
    towers = [tower for tower, restores in found.items() if restores is False]
    if None in found.values():
        log.warning("LaTo Text Encode: cannot read core's Qwen vision tower source; image tokens are used in the "
                    "order core returns them")
    for tower in towers:
        tower.forward = _reordering_forward(tower)
    try:
        yield
    finally:
        for tower in towers:
            del tower.forward   # back to the class's forward


def _reordering_forward(tower):
    class_forward = type(tower).forward

    def forward(pixel_values, image_grid_thw=None):
        merged = class_forward(tower, pixel_values, image_grid_thw)
        window_index, _ = tower.get_window_index(image_grid_thw)
        return merged[torch.argsort(window_index.to(merged.device))]

    return forward
