"""Local Qwen2.5-VL / Qwen3-VL model folders: checking them and loading them with transformers.

Used by the VLM landmark predictor and by LaTo's text encoder (a stock Qwen2.5-VL-7B-Instruct folder).
Nothing is downloaded (local_files_only). bf16 on CUDA (fp16 where bf16 is missing), fp32 on CPU.
"""
from __future__ import annotations

import json
from pathlib import Path

from packaging.version import Version

from .errors import FaceEditError
# config.json model_type -> (transformers class, first transformers version that has it)
FAMILIES = {
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "4.49"),
    "qwen3_vl": ("Qwen3VLForConditionalGeneration", "4.57"),
}


class VlmLoadError(FaceEditError):
    """The model folder is missing, incomplete, of an unsupported family, or fails to load."""


def check_model_folder(folder: str | Path) -> str:
    """The family ('qwen2_5_vl' or 'qwen3_vl') of a complete local model folder; VlmLoadError otherwise."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise VlmLoadError(f"VLM landmark predictor folder not found: {folder}. Download the model folder "
                           "(e.g. LaTo's Landmark_Predictor/) and give its path.")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VlmLoadError(f"{folder} has no config.json; it is not a transformers model folder.") from None
    except (OSError, ValueError) as e:
        raise VlmLoadError(f"{folder / 'config.json'} cannot be read as JSON: {e}.") from None
    family = config.get("model_type") if isinstance(config, dict) else None
    if family not in FAMILIES:
        raise VlmLoadError(f"{folder} holds a '{family}' model; the landmark predictor supports "
                           f"{', '.join(FAMILIES)} (the LaTo release is qwen3_vl).")
    missing = [name for name, ok in _required_files(folder) if not ok]
    if missing:
        raise VlmLoadError(f"The model folder {folder} is incomplete: missing {'; '.join(missing)}.")
    return family


def _required_files(folder: Path):
    index = folder / "model.safetensors.index.json"
    has_weights = (folder / "model.safetensors").is_file() or index.is_file()
    yield "model.safetensors or model.safetensors.index.json", has_weights
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            shards = ["(a readable weight_map in model.safetensors.index.json)"]
        for shard in shards:
            yield f"weight shard {shard}", (folder / shard).is_file()
    yield "tokenizer.json (or vocab.json + merges.txt)", (folder / "tokenizer.json").is_file() or (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file())
    yield "preprocessor_config.json (or processor_config.json)", any(
        (folder / n).is_file() for n in ("preprocessor_config.json", "processor_config.json"))
    yield "a chat template (chat_template.jinja, chat_template.json or one in tokenizer_config.json)", (
        _has_chat_template(folder))


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    for name in ("tokenizer_config.json", "processor_config.json"):
        try:
            if "chat_template" in json.loads((folder / name).read_text(encoding="utf-8")):
                return True
        except (OSError, ValueError):
            continue
    return False


def load_vl_model(folder: str | Path, device: str | None = None, families: tuple[str, ...] | None = None):
    """(family, model in eval mode on device, processor, dtype) from a checked local folder."""
    import torch
    import transformers

    folder = Path(folder).expanduser()
    family = check_model_folder(folder)
    if families is not None and family not in families:
        raise VlmLoadError(f"{folder} holds a {family} model; this needs {' or '.join(families)}.")
    class_name, min_version = FAMILIES[family]
    model_cls = getattr(transformers, class_name, None)
    if model_cls is None:
        raise VlmLoadError(f"{folder} is a {family} model, which needs transformers >= {min_version}; "
                           f"installed: {transformers.__version__}. Upgrade with: pip install -U transformers")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    dtype_arg = "dtype" if Version(transformers.__version__).release[:2] >= (4, 56) else "torch_dtype"
    try:
        processor = transformers.AutoProcessor.from_pretrained(folder, local_files_only=True)
        model = model_cls.from_pretrained(folder, local_files_only=True, device_map=None, **{dtype_arg: dtype})
    except Exception as e:  # noqa: BLE001 - any loader failure becomes one clear message
        raise VlmLoadError(f"Could not load the {family} model in {folder}: {type(e).__name__}: {e}") from e
    return family, model.to(device).eval(), processor, dtype
