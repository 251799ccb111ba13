"""A random Qwen2.5-VL-7B text encoder at its real size, as `qwen_2.5_vl_7b_fp8_scaled.safetensors`, for core's
CLIPLoader (type qwen_image).

Core builds qwen_image at the 7B sizes whatever the file holds (llama.py Qwen25_7BVLI_Config and a 1280-wide vision
tower), so no tiny file can stand in for it. Keys, shapes and dtypes come from core's own module built on the meta
device with its scaled-fp8 operations: fp8 e4m3 linear weights with a float32 `scale_weight` each, the rest bf16,
and the `scaled_fp8` marker core's detection looks for. Written tensor by tensor (8.3 GB, ~1.5 min here), so the
writer never holds the whole model (safetensors.torch.save_file would want all 8 GB in memory at once); cached
beside the checkout in .cache/, keyed by the layout version.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

FILE_NAME = "qwen_2.5_vl_7b_fp8_scaled.safetensors"
LAYOUT_VERSION = 1
CACHE_DIR = Path(os.environ.get("FACE_EDIT_TEST_CACHE", Path(__file__).resolve().parents[1] / ".cache"))
SAFETENSORS_DTYPES = {torch.float8_e4m3fn: "F8_E4M3", torch.bfloat16: "BF16", torch.float32: "F32"}


def core_layout() -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every key core's qwen_image text model loads, with its shape and stored dtype."""
    from tests.tiny_sd15 import import_comfy

    comfy = import_comfy()
    import comfy.ops
    import comfy.text_encoders.llama as llama

    ops = comfy.ops.scaled_fp8_ops(fp8_matrix_mult=False, override_dtype=torch.float8_e4m3fn)
    model = llama.Qwen25_7BVLI({}, torch.bfloat16, "meta", ops)
    layout = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    for key, (shape, dtype) in layout.items():
        if key.endswith(".bias"):                             # scaled-fp8 files quantize weights only
            layout[key] = (shape, torch.bfloat16)
    layout["scaled_fp8"] = ((0,), torch.float8_e4m3fn)
    return layout


def _random_tensor(key: str, layout: dict, gen: torch.Generator) -> torch.Tensor:
    """Unit-variance fp8 values times 1/sqrt(fan-in) in scale_weight; other weights scaled directly; norms at 1."""
    shape, dtype = layout[key]
    if key == "scaled_fp8":
        return torch.empty(0, dtype=dtype)
    if key.endswith(".scale_weight"):
        weight_shape = layout[key.removesuffix("scale_weight") + "weight"][0]
        return torch.tensor(1.0 / math.sqrt(math.prod(weight_shape[1:])), dtype=torch.float32)
    if len(shape) == 1:
        is_norm = "norm" in key or ".ln_" in key
        return torch.ones(shape, dtype=dtype) if is_norm else torch.zeros(shape, dtype=dtype)
    unit = dtype == torch.float8_e4m3fn
    bound = math.sqrt(3.0) * (1.0 if unit else 1.0 / math.sqrt(math.prod(shape[1:])))
    return torch.empty(shape, dtype=torch.float32).uniform_(-bound, bound, generator=gen).to(dtype)


def write_random(path: Path, seed: int = 0) -> Path:
    """Stream a random full-size file in core's layout to `path` (safetensors format, header first)."""
    layout = core_layout()
    header, offset = {}, 0
    for key, (shape, dtype) in layout.items():
        size = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        header[key] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape),
                       "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt", "made_by": "face-edit tests (random weights)"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    gen = torch.Generator().manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as out:
        out.write(len(blob).to_bytes(8, "little"))
        out.write(blob)
        for key, (shape, dtype) in layout.items():
            tensor = _random_tensor(key, layout, gen)
            out.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    partial.rename(path)
    return path


def cached_file() -> Path:
    """The random file, written once per layout version and reused by later runs."""
    path = CACHE_DIR / f"qwen_image_random_v{LAYOUT_VERSION}" / FILE_NAME
    if not path.exists():
        write_random(path)
    return path
