"""The Qwen2.5-VL input Step1X-Edit builds for (instruction, source image).

One user turn: [fixed prefix text, source image, instruction], rendered with the processor's chat template
(add_vision_id=True, generation prompt), so the text reads
    <system turn><|im_start|>user\\n{PREFIX}Picture 1: <|vision_start|>{image pads}<|vision_end|>{instruction}
    <|im_end|>\\n<|im_start|>assistant\\n
The first `drop` hidden states are discarded: all template tokens up to the prefix's last token, which (":")
is kept. With the real Qwen2.5 tokenizer that is 217 positions (218 prefix tokens), the release's constant.

Release quirks kept for weight fidelity: the text is re-tokenized from <|vision_end|> on with quoted spans
(after character 155, i.e. inside the instruction) split into single characters; curly quotes and apostrophes
count as '"'; and the attention mask is input_ids > 0, which hides "!" (token id 0 in Qwen's vocabulary).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..errors import ImageFormatError

log = logging.getLogger(__name__)

STEP1X_PREFIX = (
    'Given a user prompt, generate an "Enhanced prompt" that provides detailed visual descriptions suitable for '
    "image generation. Evaluate the level of detail in the user prompt:\n"
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial "
    "relationships to create vivid and concrete scenes.\n"
    "- If the prompt is already detailed, refine and enhance the existing details slightly without "
    "overcomplicating.\n\n"
    "Here are examples of how to transform or refine prompts:\n"
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping "
    "peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.\n"
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street "
    "lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass "
    "skyscrapers.\n\n"
    "Please generate only the enhanced description for the prompt below and avoid including any additional "
    "commentary or evaluations:\n"
    "User Prompt:"
)
RELEASE_PREFIX_DROP = 217        # Qwen2.5-VL tokenizer: len(tokens up to the prefix end) - 1
RELEASE_VISION_END_ID = 151653   # identifies the real Qwen2/2.5 vocabulary
QUOTE_SPLIT_FROM = 155           # quotes at or before this character index are left alone (the prefix's own)
MIN_PIXELS, MAX_PIXELS = 256 * 28 * 28, 324 * 28 * 28   # Step1X's processor bounds
FETCH_MIN_PIXELS, FETCH_MAX_PIXELS = 4 * 28 * 28, 16384 * 28 * 28   # qwen_vl_utils defaults (first resize)
PATCH_FACTOR = 28


@dataclass
class QwenPromptInputs:
    input_ids: torch.Tensor       # (1, L) long
    attention_mask: torch.Tensor  # (1, L) long
    pixel_values: torch.Tensor    # (patches, C*T*14*14)
    image_grid_thw: torch.Tensor  # (1, 3)
    drop: int                     # leading positions whose hidden states are discarded


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Size with both sides multiples of factor and area within [min_pixels, max_pixels], aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise ImageFormatError(f"image aspect ratio {width}x{height} is too extreme for Qwen2.5-VL (max 200:1)")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def to_pil_rgb(image) -> Image.Image:
    """PIL, uint8 array, or float tensor/array in [0, 1] as (H, W, C), (1, H, W, C) or (C, H, W).
    Floats are truncated to uint8 (x * 255, no rounding) like the release's ToPILImage."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ImageFormatError(f"expected one RGB image, got an array of shape {tuple(array.shape)}")
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    array = np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def resize_for_qwen(image: Image.Image) -> Image.Image:
    """qwen_vl_utils' resize (28-multiples, wide bounds), then the processor's into 256..324 * 28^2 pixels;
    bicubic. The processor then sees a size it keeps as is."""
    for low, high in ((FETCH_MIN_PIXELS, FETCH_MAX_PIXELS), (MIN_PIXELS, MAX_PIXELS)):
        h, w = smart_resize(image.height, image.width, PATCH_FACTOR, low, high)
        if (w, h) != image.size:
            image = image.resize((w, h), Image.BICUBIC)
    return image


def build_messages(instruction: str, image: Image.Image) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": STEP1X_PREFIX},
                                         {"type": "image", "image": image},
                                         {"type": "text", "text": instruction}]}]


def render_chat(processor, instruction: str, image: Image.Image | None = None) -> str:
    return processor.apply_chat_template(build_messages(instruction, image), tokenize=False,
                                         add_generation_prompt=True, add_vision_id=True)


def split_quoted(text: str) -> list[str]:
    """The release's pieces: quoted spans after QUOTE_SPLIT_FROM become one piece per character wrapped in
    curly quotes; the quote characters themselves stay with the surrounding plain pieces."""
    text = text.replace("“", '"').replace("”", '"').replace("'", '"')
    pieces, plain, quoted = [], "", False
    for index, char in enumerate(text):
        if char == '"' and index > QUOTE_SPLIT_FROM:
            plain += char
            if not quoted:
                pieces.append(plain)
                plain = ""
            quoted = not quoted
        elif quoted:
            pieces.append(f"“{char}”")
        else:
            plain += char
    return pieces + [plain] if plain else pieces


def _single_id(tokenizer, text: str) -> int | None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids[0] if len(ids) == 1 else None


def retokenize_quoted(tokenizer, text: str) -> list[int]:
    """Token ids of text piece by piece (split_quoted); a piece tokenized as [“, ..., ”] loses both quotes."""
    open_id, close_id = _single_id(tokenizer, "“"), _single_id(tokenizer, "”")
    ids: list[int] = []
    for piece in split_quoted(text):
        piece_ids = tokenizer(piece)["input_ids"]
        if len(piece_ids) >= 2 and piece_ids[0] == open_id and piece_ids[-1] == close_id:
            piece_ids = piece_ids[1:-1]
        ids.extend(piece_ids)
    return ids


def is_release_vocabulary(tokenizer) -> bool:
    return tokenizer.convert_tokens_to_ids("<|vision_end|>") == RELEASE_VISION_END_ID


def prefix_drop(processor) -> int:
    """Positions to drop: template tokens that start before the end of STEP1X_PREFIX, minus one (the release
    keeps the prefix's final ':'). Counted in context with offsets, so merges across the boundary are fine."""
    text = render_chat(processor, "x")
    prefix_end = text.index(STEP1X_PREFIX) + len(STEP1X_PREFIX)
    encoding = processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    count = sum(1 for start, _ in encoding["offset_mapping"] if start < prefix_end)
    drop = count - 1
    if is_release_vocabulary(processor.tokenizer) and drop != RELEASE_PREFIX_DROP:
        log.warning("Qwen chat template gives a prefix of %d tokens; using the release's drop of %d",
                    drop, RELEASE_PREFIX_DROP)
        return RELEASE_PREFIX_DROP
    return drop


def build_qwen_inputs(processor, instruction: str, image, *, quote_split: bool = True,
                      drop: int | None = None) -> QwenPromptInputs:
    """Processor inputs for one (instruction, source image) pair, as the release builds them."""
    pil = resize_for_qwen(to_pil_rgb(image))
    text = render_chat(processor, instruction, pil)
    inputs = processor(text=[text], images=[pil], return_tensors="pt")
    grid = inputs["image_grid_thw"]
    if tuple(int(v) * 14 for v in grid[0, 1:]) != (pil.height, pil.width):
        raise ImageFormatError(f"the Qwen processor resized the {pil.width}x{pil.height} image to a "
                               f"{int(grid[0, 1]) * 14}x{int(grid[0, 2]) * 14} grid: its min/max_pixels exclude "
                               f"{MIN_PIXELS}..{MAX_PIXELS}; fix preprocessor_config.json")
    input_ids = inputs["input_ids"]
    if quote_split:
        vision_end = processor.tokenizer.convert_tokens_to_ids("<|vision_end|>")
        new_ids = torch.tensor(retokenize_quoted(processor.tokenizer, text), dtype=input_ids.dtype)
        cut_old = int((input_ids[0] == vision_end).nonzero()[0, 0])
        cut_new = int((new_ids == vision_end).nonzero()[0, 0])
        input_ids = torch.cat([input_ids[0, :cut_old], new_ids[cut_new:]])[None]
    return QwenPromptInputs(input_ids=input_ids, attention_mask=(input_ids > 0).long(),
                            pixel_values=inputs["pixel_values"], image_grid_thw=grid,
                            drop=prefix_drop(processor) if drop is None else drop)


QWEN25_CHAT_HEAD = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


def step1x_llama_template() -> str:
    """Step1X-Edit's chat text with "{}" for the instruction and one image placeholder, as a ComfyUI Qwen
    tokenizer takes it (tokenize_with_weights(text, llama_template=..., images=[...]))."""
    escaped = STEP1X_PREFIX.replace("{", "{{").replace("}", "}}")
    return (f"{QWEN25_CHAT_HEAD}{escaped}Picture 1: {IMAGE_PLACEHOLDER}{{}}<|im_end|>\n"
            "<|im_start|>assistant\n")


def pad_or_cut(states: torch.Tensor, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, D) kept states -> (max_length, D) zero padded or cut, and the (max_length,) long mask of real rows."""
    states = states[:max_length]
    hidden = torch.zeros(max_length, states.shape[-1], dtype=states.dtype, device=states.device)
    hidden[: states.shape[0]] = states
    mask = torch.zeros(max_length, dtype=torch.long, device=states.device)
    mask[: states.shape[0]] = 1
    return hidden, mask
