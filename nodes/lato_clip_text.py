"""Step1X-Edit's text conditioning through ComfyUI core's Qwen2.5-VL text encoder (CLIPLoader type qwen_image).

Core's qwen_image encoder cuts its output after the chat head ("<|im_start|>user\n"); the release drops the
first 217 positions of the whole prompt (head + Step1X prefix up to its last ':' exclusive), so the remaining
positions of the prefix are dropped here, counted with core's own tokenizer. Then pad or cut to 640 with a mask.
Core 0.3.75's vision tower leaves image tokens in window order; qwen_vision_order puts them back in raster order
for the encode, as transformers does. Not reproduced on this path: the release's per-character re-tokenizing of
quoted spans and its mask hiding token id 0 ("!"); the pack's Qwen folder loader keeps both.
"""
from __future__ import annotations

import numpy as np
import torch

from lato_core.errors import FaceEditError
from lato_core.text.encode import DEFAULT_MAX_LENGTH
from lato_core.text.qwen_prompt import (QWEN25_CHAT_HEAD, RELEASE_PREFIX_DROP, pad_or_cut, resize_for_qwen,
                                        step1x_llama_template, to_pil_rgb)

from .qwen_vision_order import image_tokens_in_raster_order


QWEN_IMAGE_TOKENS = "qwen25_7b"   # the key core's qwen_image tokenizer files its tokens under


def head_length(clip) -> int:
    """Tokens of the chat head that core's qwen_image encoder already cuts off."""
    tokens = clip.tokenize(QWEN25_CHAT_HEAD, llama_template="{}")
    if QWEN_IMAGE_TOKENS not in tokens:
        raise FaceEditError(f"LaTo Text Encode needs core's Load CLIP with type qwen_image and a "
                            f"qwen_2.5_vl_7b*.safetensors file; this CLIP tokenizes for {sorted(tokens)}")
    return len(tokens[QWEN_IMAGE_TOKENS][0])


def encode_with_clip(clip, instruction: str, crops: torch.Tensor,
                     max_length: int = DEFAULT_MAX_LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, max_length, 3584) hidden states and (B, max_length) mask, one row per crop (B, H, W, 3)."""
    extra_drop = RELEASE_PREFIX_DROP - head_length(clip)
    rows = []
    for crop in crops:
        pil = resize_for_qwen(to_pil_rgb(crop))   # Step1X's pixel bounds, before core's own processing
        image = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0)[None]
        tokens = clip.tokenize(instruction, llama_template=step1x_llama_template(), images=[image])
        with image_tokens_in_raster_order(clip):
            states = clip.encode_from_tokens(tokens, return_dict=True)["cond"][0]
        rows.append(pad_or_cut(states[extra_drop:].float().cpu(), max_length))
    return torch.stack([h for h, _ in rows]), torch.stack([m for _, m in rows])
