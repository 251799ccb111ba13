"""Measuring a batch of edited crops at once, as the Edit Report node does."""
from __future__ import annotations

import functools
import json

import numpy as np
import torch

from ..errors import FaceEditError
from ..face.detect import DetectOptions
from ..face.landmarks import FaceLandmarks
from .identity import ArcFaceModel
from .report import measure_edit, render_report


@functools.lru_cache(maxsize=2)
def cached_arcface(path: str) -> ArcFaceModel:
    return ArcFaceModel(path)


def params_per_face(report: str, count: int) -> list:
    """The predictor report (one JSON object or a list, one per face) -> each face's "params" or None."""
    if not report.strip():
        return [None] * count
    try:
        data = json.loads(report)
    except json.JSONDecodeError as e:
        raise FaceEditError(f"predictor_report is not JSON ({e.msg} at line {e.lineno}); connect the Landmark "
                            "Predictor's report output or leave it empty.") from None
    data = data if isinstance(data, list) else [data]
    return [(data[i] if i < len(data) and isinstance(data[i], dict) else {}).get("params") for i in range(count)]


def measure_batch(source: torch.Tensor, edited: torch.Tensor, targets: list[FaceLandmarks],
                  source_faces: list[FaceLandmarks] | None = None, predictor_report: str = "",
                  arcface_onnx: str = "", detector: str = "dlib_hog") -> tuple[torch.Tensor, list[dict]]:
    """(report pictures (N, H, W, 3), one metrics dict per target face) for crops (B, H, W, 3)."""
    if source.shape[1:3] != edited.shape[1:3]:
        raise FaceEditError(f"source crops are {source.shape[2]}x{source.shape[1]} but edited crops are "
                            f"{edited.shape[2]}x{edited.shape[1]}; compare crops of one size.")
    arcface = cached_arcface(arcface_onnx.strip()) if arcface_onnx.strip() else None
    params = params_per_face(predictor_report or "", len(targets))
    options = DetectOptions(backend=detector)
    pictures, results = [], []
    for i, target in enumerate(targets):
        k = target.image_index
        src, out = source[min(k, source.shape[0] - 1)], edited[min(k, edited.shape[0] - 1)]
        face = source_faces[i] if source_faces is not None and i < len(source_faces) else None
        metrics, detected = measure_edit(src, out, target, face, params[i], arcface, options)
        results.append({"face": i, **metrics})
        pictures.append(torch.from_numpy(render_report(src, out, metrics, target, detected).astype(np.float32) / 255.0))
    return torch.stack(pictures), results
