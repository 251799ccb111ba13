"""Optional VLM landmark predictor: a local Qwen2.5-VL or Qwen3-VL folder (the released LaTo predictor is a
Qwen3-VL checkpoint) run with transformers, greedy decoding, and the strict parser in vlm_parse.

Nothing is downloaded (local_files_only). bf16 on CUDA, fp32 on CPU. When the model is missing or its
answer fails the checks, predict_with_fallback uses the parametric predictor and reports why.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import FaceEditError
from ..face.landmarks import FaceLandmarks
from ..vl_models import FAMILIES, VlmLoadError, check_model_folder, load_vl_model  # noqa: F401 (re-exported)
from .vlm_parse import VlmOutputError, parse_vlm_landmarks, rescale
from .vlm_prompt import chat_messages

CANVAS = 512


class VlmPredictor:
    """A loaded VLM landmark predictor. with_points=True quotes the source landmarks in the prompt
    (off by default: the released checkpoint was trained on photo-only prompts; see vlm_prompt)."""

    def __init__(self, folder: str | Path, device: str | None = None, with_points: bool = False):
        self.folder = Path(folder).expanduser()
        self.family, self.model, self.processor, self.dtype = load_vl_model(self.folder, device)
        self.device = next(self.model.parameters()).device
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
            except Exception as e:  # noqa: BLE001 - a parser bug must not cost the user the edit: fall back
                reason = f"VLM landmark answer rejected (parser_error): {type(e).__name__}: {str(e)[:200]}"
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
