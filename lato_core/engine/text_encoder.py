"""LaTo's text encoder: a stock Qwen2.5-VL-Instruct folder, run once per (instruction, crop) and cached."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import FaceEditError
from ..text.encode import TextConditioning, encode_hidden, encode_text, free_text_encoder
from ..vl_models import load_vl_model
from .model import LaToModel


@dataclass
class TextEncoder:
    model: torch.nn.Module
    processor: object
    folder: str


def load_text_encoder(folder: str | Path, device: str | None = None) -> TextEncoder:
    _, model, processor, _ = load_vl_model(folder, device, families=("qwen2_5_vl",))
    return TextEncoder(model, processor, str(folder))


def encode_hidden_pair(encoder: TextEncoder | None, instruction: str, crops: torch.Tensor,
                       device: torch.device | str = "cpu", offload_device: torch.device | str = "cpu"
                       ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(hidden, mask) of the instruction, (hidden, mask) of ""], one row per crop (B, H, W, 3): the release's
    CFG pair for the native model. The encoder runs on `device` and goes back to offload_device afterwards; the
    cache keeps the states on the CPU."""
    if encoder is None:
        raise FaceEditError("LaTo Text Encode needs a text encoder: connect core's CLIPLoader (type qwen_image) "
                            "or the LaTo Text Encoder Loader.")
    images = list(crops)
    encoder.model.to(device)
    try:
        return [encode_hidden(encoder.model, encoder.processor, [text] * len(images), images)
                for text in (instruction, "")]
    finally:
        free_text_encoder(encoder.model, offload_device)


def encode_edit(encoder: TextEncoder, lato: LaToModel, instruction: str, crops: torch.Tensor,
                device: torch.device | str = "cpu", free_after: bool = True,
                offload_device: torch.device | str = "cpu") -> tuple[TextConditioning, TextConditioning]:
    """(instruction, empty prompt) encodings with the standalone engine's connector, as the release's CFG pair."""
    images = list(crops)
    encoder.model.to(device)
    try:
        cond = encode_text(encoder.model, encoder.processor, lato.connector, [instruction] * len(images), images)
        uncond = encode_text(encoder.model, encoder.processor, lato.connector, [""] * len(images), images)
    finally:
        if free_after:
            free_text_encoder(encoder.model, offload_device)
    return cond, uncond
