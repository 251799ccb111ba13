"""Optional VLM landmark predictor: a local Qwen2.5-VL or Qwen3-VL folder (the released LaTo predictor is a
Qwen3-VL checkpoint) run with transformers, greedy decoding, and the strict parser in vlm_parse.

Nothing is downloaded (local_files_only). bf16 on CUDA, fp32 on CPU. When the model is missing or its
answer fails the checks, predict_with_fallback uses the parametric predictor and reports why.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
from packaging.version import Version
from PIL import Image

from ..errors import FaceEditError
from ..face.landmarks import FaceLandmarks
from .vlm_parse import VlmOutputError, parse_vlm_landmarks, rescale
from .vlm_prompt import chat_messages

CANVAS = 512
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


class VlmPredictor:
    """A loaded VLM landmark predictor. with_points=True quotes the source landmarks in the prompt
    (off by default: the released checkpoint was trained on photo-only prompts; see vlm_prompt)."""

    def __init__(self, folder: str | Path, device: str | None = None, with_points: bool = False):
        import torch
        import transformers

        self.folder = Path(folder).expanduser()
        self.family = check_model_folder(self.folder)
        class_name, min_version = FAMILIES[self.family]
        model_cls = getattr(transformers, class_name, None)
        if model_cls is None:
            raise VlmLoadError(f"{self.folder} is a {self.family} model, which needs transformers >= {min_version}; "
                               f"installed: {transformers.__version__}. Upgrade with: pip install -U transformers")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        cuda = self.device.type == "cuda"
        self.dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
        dtype_arg = "dtype" if Version(transformers.__version__).release[:2] >= (4, 56) else "torch_dtype"
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(self.folder, local_files_only=True)
            self.model = model_cls.from_pretrained(self.folder, local_files_only=True, device_map=None,
                                                   **{dtype_arg: self.dtype})
        except Exception as e:  # noqa: BLE001 - any loader failure becomes one clear message
            raise VlmLoadError(f"Could not load the {self.family} model in {self.folder}: "
                               f"{type(e).__name__}: {e}") from e
        self.model.to(self.device).eval()
        self.with_points = with_points

    def generate_text(self, image, instruction: str, source_face: FaceLandmarks,
                      max_new_tokens: int = 8192, seed: int | None = 0) -> str:
        """The model's raw reply (greedy decoding) for the source photo stretched to the 512 canvas."""
        import torch

        canvas_image = _canvas_image(image, source_face)
        points = rescale(source_face.points, source_face.image_size, (CANVAS, CANVAS)) if self.with_points else None
        prompt = self.processor.apply_chat_template(chat_messages(instruction, CANVAS, points), tokenize=False,
                                                    add_generation_prompt=True)
        inputs = self.processor(text=[prompt], images=[canvas_image], return_tensors="pt").to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=int(max_new_tokens), do_sample=False, num_beams=1)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]

    def predict(self, image, instruction: str, source_face: FaceLandmarks, max_new_tokens: int = 8192,
                seed: int | None = 0) -> tuple[str, FaceLandmarks]:
        """(raw reply, target landmarks in the source's image space). Raises VlmOutputError on a bad reply."""
        raw = self.generate_text(image, instruction, source_face, max_new_tokens, seed)
        face, _ = parse_vlm_landmarks(raw, source_face, CANVAS)
        return raw, face


def predict_with_fallback(vlm: VlmPredictor | None, image, instruction: str, source_face: FaceLandmarks,
                          fallback: Callable[[], FaceLandmarks], max_new_tokens: int = 8192,
                          seed: int | None = 0) -> tuple[FaceLandmarks, dict]:
    """Target landmarks from the VLM when it gives a usable answer, else from fallback().
    report = {"used": "vlm" | "parametric", "reason": why, "raw": the reply ('' if none), "notes": [...]}."""
    raw = ""
    if vlm is None:
        reason = "no VLM landmark predictor loaded"
    else:
        try:
            raw = vlm.generate_text(image, instruction, source_face, max_new_tokens, seed)
        except FaceEditError:
            raise  # bad inputs (image/landmark mismatch, empty instruction): the parametric path would fail too
        except Exception as e:  # noqa: BLE001 - generation failures (OOM, CUDA, model bugs) fall back
            reason = f"generation failed: {type(e).__name__}: {e}"
            _free_cuda_memory()
        else:
            try:
                face, notes = parse_vlm_landmarks(raw, source_face, CANVAS)
                return face, {"used": "vlm", "reason": "the VLM answer passed all checks", "raw": raw, "notes": notes}
            except VlmOutputError as e:
                reason = str(e)
    return fallback(), {"used": "parametric", "reason": reason, "raw": raw, "notes": []}


def _canvas_image(image, face: FaceLandmarks) -> Image.Image:
    """HxWx3 uint8 (numpy or PIL) -> RGB PIL image stretched to the canvas; the landmarks must match its size."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise FaceEditError(f"The VLM predictor needs an RGB uint8 image of shape (H, W, 3), not {array.dtype} "
                            f"{array.shape}.")
    h, w = array.shape[:2]
    if (w, h) != face.image_size:
        raise FaceEditError(f"The source landmarks are for a {face.width}x{face.height} image but the image is "
                            f"{w}x{h}.")
    pil = Image.fromarray(array)
    return pil if (w, h) == (CANVAS, CANVAS) else pil.resize((CANVAS, CANVAS), Image.Resampling.BICUBIC)


def _free_cuda_memory() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
