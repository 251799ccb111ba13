"""Tiny model files under the exact names the example workflows ask for, so a workflow runs as the user opens it.

Each loader widget of a workflow (node type, input name) maps to a builder of a tiny random model in the same
architecture and key layout and to the ComfyUI models/ subfolder it belongs in. A loader widget with no builder
fails the install: every example workflow must be runnable by the tests.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file


QWEN_7B_WIDTH = 3584   # what core's qwen_image CLIP hands the connector


def _lato_dit(path: Path) -> None:
    from tests import tiny_lato
    tiny_lato.write_dit(path, text_width=QWEN_7B_WIDTH)


def _lato_adapter(path: Path) -> None:
    from tests import tiny_lato
    if path.suffix != ".safetensors":
        tiny_lato.write_adapter(path)
        return
    from lato_core.repack import repack_adapter   # the .safetensors a user makes from the release's .pth
    pickle = tiny_lato.write_adapter(path.with_suffix(".pth.tmp"))
    repack_adapter(pickle, path)
    pickle.unlink()


def _lato_tokenizer(path: Path) -> None:
    from tests import tiny_lato
    tiny_lato.write_tokenizer(path)


def _lato_text_encoder(path: Path) -> None:
    from tests import tiny_lato
    tiny_lato.write_text_encoder(path)


def _core_qwen_image(path: Path) -> None:
    """Core's qwen_image CLIP only exists at 7B: a random full-size file, written once and linked here."""
    from tests.full_qwen_image import cached_file
    if not path.name.startswith("qwen_2.5_vl_7b"):
        raise ValueError(f"no test model is built for CLIPLoader file {path.name}")
    path.symlink_to(cached_file())


def _flux_vae(path: Path) -> None:
    from tests import tiny_lato
    tiny_lato.write_flux_vae(path)


def write_lato_lora(path: Path) -> None:
    from tests import tiny_lato
    gen = torch.Generator().manual_seed(3)
    hidden, rank = tiny_lato.DIT.hidden_size, 2
    name = "lora_unet_double_blocks_0_img_attn_proj"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"{name}.lora_down.weight": torch.randn(rank, hidden, generator=gen),
               f"{name}.lora_up.weight": torch.randn(hidden, rank, generator=gen) * 0.1,
               f"{name}.alpha": torch.tensor(2.0)}, str(path))


def _sd15_checkpoint(path: Path) -> None:
    from tests.tiny_sd15 import write_checkpoint
    write_checkpoint(path)


def _clip_vision(path: Path) -> None:
    from tests.tiny_sd15 import write_clip_vision
    write_clip_vision(path)


def _ca2_adapter(path: Path) -> None:
    from caedit_core.checkpoint import save_adapter
    from tests.tiny_sd15 import tiny_adapter
    save_adapter(tiny_adapter(0, "unet", refnet=True, residual_scale=0.02), path)


# (node type, widget) -> (models/ subfolder, builder)
BUILDERS: dict[tuple[str, str], tuple[str, Callable[[Path], None]]] = {
    ("FaceEditLaToModelLoader", "dit_name"): ("diffusion_models", _lato_dit),
    ("FaceEditLaToModelLoader", "landmark_adapter"): ("lato", _lato_adapter),
    ("LoraLoaderModelOnly", "lora_name"): ("loras", write_lato_lora),
    ("FaceEditLaToTokenizerLoader", "tokenizer_name"): ("lato", _lato_tokenizer),
    ("FaceEditLaToTextEncoderLoader", "folder"): ("text_encoders", _lato_text_encoder),
    ("CLIPLoader", "clip_name"): ("text_encoders", _core_qwen_image),
    ("VAELoader", "vae_name"): ("vae", _flux_vae),
    ("CheckpointLoaderSimple", "ckpt_name"): ("checkpoints", _sd15_checkpoint),
    ("CLIPVisionLoader", "clip_name"): ("clip_vision", _clip_vision),
    ("FaceEditCA2AdapterLoader", "adapter_name"): ("ca2", _ca2_adapter),
}
# Widget values that mean "nothing to load" (e.g. the adapter inside the checkpoint).
NOT_A_FILE = {"(inside the checkpoint)"}


def model_widgets(api_prompt: dict) -> list[tuple[str, str, str]]:
    """(node type, widget, file name) of every model-loading widget of an API prompt."""
    found = []
    for node in api_prompt.values():
        for name, value in node["inputs"].items():
            if (node["class_type"], name) in BUILDERS and isinstance(value, str) and value not in NOT_A_FILE:
                found.append((node["class_type"], name, value))
    return found


def install_models(api_prompt: dict, models: Path) -> list[Path]:
    """Write a tiny model for every loader widget of the prompt under the name it asks for; returns the paths."""
    written = []
    for kind, widget, file_name in model_widgets(api_prompt):
        folder, build = BUILDERS[(kind, widget)]
        path = Path(models) / folder / file_name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            build(path)
        written.append(path)
    return written


WEIGHT_SUFFIXES = (".safetensors", ".sft", ".pth", ".pt", ".ckpt", ".bin", ".onnx")


def unknown_loaders(api_prompt: dict) -> list[str]:
    """Model-file widgets (a loader's *_name or folder widget, or a weight file name) that no builder covers: a workflow
    the tests could not run. SaveImage's filename_prefix and LoadImage's picture are not models."""
    missing = []
    for node in api_prompt.values():
        kind = node["class_type"]
        for name, value in node["inputs"].items():
            if not isinstance(value, str) or kind in ("LoadImage", "SaveImage") or value in NOT_A_FILE:
                continue
            loader_widget = "Loader" in kind and (name.endswith("_name") or name in ("folder", "landmark_adapter"))
            looks_like_model = loader_widget or value.endswith(WEIGHT_SUFFIXES)
            if looks_like_model and (kind, name) not in BUILDERS:
                missing.append(f"{kind}.{name} = {value!r}")
    return missing
