"""Instruction + source image -> Step1X-Edit text conditioning, with an LRU cache over the Qwen2.5-VL runs.

encode_text runs the 7B model once per (instruction, image, model) and caches the kept hidden states, so a new
seed, guidance scale or step count reuses them. The pooled vector y is computed once; the refined text tokens
depend on the step's flow time t, so TextConditioning.tokens(t) runs the (small) connector at every step.
"""
from __future__ import annotations

import gc
import hashlib
import inspect
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, Sequence

import torch

from ..errors import FaceEditError
from .connector import Qwen2Connector
from .qwen_prompt import build_qwen_inputs, pad_or_cut, to_pil_rgb

DEFAULT_MAX_LENGTH = 640


@dataclass
class TextConditioning:
    hidden: torch.Tensor      # (B, max_length, qwen_hidden) kept Qwen states, zero padded
    mask: torch.Tensor        # (B, max_length) long, 1 = real token (the DiT itself attends to padding too)
    pooled: torch.Tensor      # (B, pooled_dim): y for vector_in
    connector: Qwen2Connector

    def tokens(self, t: torch.Tensor | float) -> torch.Tensor:
        """(B, max_length, context_in_dim) for the DiT's txt_in at flow time t in [0, 1] (not * 1000)."""
        with torch.no_grad():
            return self.connector.tokens(self.hidden, t, self.mask)


class LRUCache:
    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, object] = OrderedDict()

    def get(self, key: Hashable):
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: Hashable, value) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


SAMPLE_CACHE = LRUCache(32)   # per (instruction, image, model, options): CPU hidden (L, D), mask (L,)
BATCH_CACHE = LRUCache(8)     # whole TextConditioning per (sample keys, connector): identical objects on repeat


def clear_text_cache() -> None:
    SAMPLE_CACHE.clear()
    BATCH_CACHE.clear()


def image_hash(image) -> str:
    """Hash of the RGB pixels Qwen would see before resizing (PIL, array or tensor)."""
    pil = to_pil_rgb(image)
    digest = hashlib.sha1(pil.tobytes())
    digest.update(f"{pil.width}x{pil.height}".encode())
    return digest.hexdigest()


def model_key(qwen_model) -> tuple[str, str]:
    """(name_or_path, per-instance token): a reloaded or different model never hits old entries."""
    token = getattr(qwen_model, "_lato_text_cache_token", None)
    if token is None:
        token = uuid.uuid4().hex
        qwen_model._lato_text_cache_token = token
    return str(getattr(getattr(qwen_model, "config", None), "_name_or_path", "")), token


def processor_key(processor) -> tuple:
    tokenizer = processor.tokenizer
    template = getattr(processor, "chat_template", None) or ""
    return tokenizer.name_or_path, len(tokenizer), hashlib.sha1(str(template).encode()).hexdigest()


def last_hidden_state(qwen_model, **inputs) -> torch.Tensor:
    """Final-normed last hidden state. transformers >= 4.52: the multimodal backbone (no vocab-sized logits);
    older versions (no vision inside .model): the full model's hidden_states[-1], as the release reads it.
    transformers 5 places image tokens in M-RoPE (3D positions) only when told which tokens are image tokens
    (mm_token_type_ids); without it every token gets a 1D position, unlike the release. Older versions find the
    image tokens in input_ids themselves."""
    backbone = getattr(qwen_model, "model", None)
    if "mm_token_type_ids" in inspect.signature(qwen_model.forward).parameters and "input_ids" in inputs:
        image_token = qwen_model.config.image_token_id
        inputs = {**inputs, "mm_token_type_ids": (inputs["input_ids"] == image_token).int()}
    if hasattr(qwen_model, "lm_head") and "pixel_values" in inspect.signature(backbone.forward).parameters:
        return backbone(**inputs, use_cache=False).last_hidden_state
    return qwen_model(**inputs, output_hidden_states=True, use_cache=False).hidden_states[-1]


def _run_qwen(qwen_model, processor, instruction: str, image, max_length: int, quote_split: bool,
              drop: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    device = next(qwen_model.parameters()).device
    inputs = build_qwen_inputs(processor, instruction, image, quote_split=quote_split, drop=drop)
    with torch.no_grad():
        last = last_hidden_state(qwen_model, input_ids=inputs.input_ids.to(device),
                                 attention_mask=inputs.attention_mask.to(device),
                                 pixel_values=inputs.pixel_values.to(device),
                                 image_grid_thw=inputs.image_grid_thw.to(device))
    states = last[0, inputs.drop:][:max_length]
    if states.shape[0] == 0:
        raise FaceEditError(f"the Qwen prompt has {last.shape[1]} tokens, not more than the "
                            f"{inputs.drop} dropped prefix positions: check the processor's chat template")
    return pad_or_cut(states.cpu(), max_length)   # kept on CPU: no VRAM held


def _encoded_rows(qwen_model, processor, instructions, image, max_length, quote_split, drop):
    """(cache keys, [(hidden (L, D), mask (L,))]) for instructions (one per row), each with the same image or
    one image per row; each row runs Qwen once and is cached."""
    instructions = [instructions] if isinstance(instructions, str) else list(instructions)
    images = list(image) if isinstance(image, (list, tuple)) else [image] * len(instructions)
    if len(images) != len(instructions):
        raise FaceEditError(f"{len(instructions)} instructions but {len(images)} images")
    hashes = {id(img): image_hash(img) for img in images}
    options = (max_length, quote_split, drop, model_key(qwen_model), processor_key(processor))
    keys = [(text, hashes[id(img)]) + options for text, img in zip(instructions, images)]
    rows = []
    for key, text, img in zip(keys, instructions, images):
        row = SAMPLE_CACHE.get(key)
        if row is None:
            row = _run_qwen(qwen_model, processor, text, img, max_length, quote_split, drop)
            SAMPLE_CACHE.put(key, row)
        rows.append(row)
    return keys, rows


def encode_hidden(qwen_model, processor, instructions: str | Sequence[str], image,
                  max_length: int = DEFAULT_MAX_LENGTH, *, quote_split: bool = True,
                  drop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept Qwen hidden states (B, max_length, D) and mask (B, max_length): chat template, prefix drop, pad/cut;
    what the native model's conditioning carries (its connector runs inside the model)."""
    _, rows = _encoded_rows(qwen_model, processor, instructions, image, max_length, quote_split, drop)
    return torch.stack([h for h, _ in rows]), torch.stack([m for _, m in rows])


def encode_text(qwen_model, processor, connector: Qwen2Connector, instructions: str | Sequence[str], image,
                max_length: int = DEFAULT_MAX_LENGTH, *, quote_split: bool = True,
                drop: int | None = None) -> TextConditioning:
    """encode_hidden plus the connector's pooled vector, for the standalone sampler; an identical call returns the
    identical TextConditioning."""
    keys, rows = _encoded_rows(qwen_model, processor, instructions, image, max_length, quote_split, drop)
    batch_key = (tuple(keys), id(connector))
    cached = BATCH_CACHE.get(batch_key)
    if cached is not None:
        return cached
    hidden = torch.stack([h for h, _ in rows]).to(connector.device)
    mask = torch.stack([m for _, m in rows]).to(connector.device)
    with torch.no_grad():
        pooled = connector.pooled(hidden, mask)
    result = TextConditioning(hidden=hidden, mask=mask, pooled=pooled, connector=connector)
    BATCH_CACHE.put(batch_key, result)
    return result


def free_text_encoder(qwen_model, offload_device: str | torch.device = "cpu") -> None:
    """Move the Qwen model off the GPU and release cached GPU blocks; cached encodings stay usable."""
    if qwen_model is not None:
        qwen_model.to(offload_device)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
