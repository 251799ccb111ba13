"""Landmark sets to train the tokenizer on, made offline from the photos the packages ship.

1. Base faces: faces detected on the photos (default sample:astronaut and sample:grace_hopper; any
   folder of photos can be added), each cropped to the 512 canvas, plus the 3D model's mean face.
2. Each base face is fitted once with the parametric predictor's 3D face (predictor.geometry.fit_face).
3. Each sample re-projects that fit with random pose changes (yaw, pitch, roll), one random expression,
   mouth_open, blink and brow_raise, exactly as predict_landmarks does, then takes a small random
   similarity jitter (scale, rotation, shift) and per-point noise. Points are clamped onto the canvas.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..face.crop import crop_faces
from ..face.detect import detect_faces
from ..face.landmarks import FaceLandmarks
from ..photos import load_photo, photos_in
from ..predictor.face_model import EXPRESSIONS, load_face_model
from ..predictor.geometry import (LIMITS, FaceFit, contour_sliding, edited_shape, fit_face, project,
                                  rotation_matrix, synthetic_face)
from ..predictor.parse import EditParams

CANVAS = 512
SAMPLE_PHOTOS = ("sample:astronaut", "sample:grace_hopper")


@dataclass
class Augmentation:
    """Ranges of the random edits (uniform in +-range) and of the jitter."""
    yaw: float = 45.0
    pitch: float = 25.0
    roll: float = 20.0
    expression: float = 1.5      # amount of one random expression, 0..this
    mouth_open: float = 0.8      # 0..this
    blink: float = 1.0           # +-this
    brow_raise: float = 1.0      # +-this
    scale: float = 0.15          # crop scale factor 1 +- this
    rotation: float = 5.0        # degrees, +-
    shift: float = 24.0          # pixels, +-
    noise: float = 0.7           # per-point Gaussian noise, pixels


def base_faces(photos: tuple[str, ...] = SAMPLE_PHOTOS, folder: str | Path | None = None) -> list[FaceLandmarks]:
    """Crop-space (512) landmarks of the largest face of each photo, and the model's mean face."""
    refs = list(photos) + ([str(p) for p in photos_in(folder)] if folder is not None else [])
    faces = []
    for photo in refs:
        rgb = load_photo(photo)
        found = detect_faces(rgb)
        if not found:
            continue
        face = max(found, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        _, _, mapped = crop_faces(torch.from_numpy(rgb.copy()).float()[None] / 255.0, [face], size=CANVAS)
        faces.append(mapped[0])
    faces.append(synthetic_face(scale=CANVAS / 4.0, centre=(CANVAS / 2, CANVAS * 0.55), image_size=(CANVAS, CANVAS)))
    return faces


def random_params(rng: np.random.Generator, aug: Augmentation) -> EditParams:
    amounts = dict.fromkeys(EXPRESSIONS, 0.0)
    amounts[EXPRESSIONS[rng.integers(len(EXPRESSIONS))]] = float(rng.uniform(0, aug.expression))
    return EditParams(yaw=float(rng.uniform(-aug.yaw, aug.yaw)), pitch=float(rng.uniform(-aug.pitch, aug.pitch)),
                      roll=float(rng.uniform(-aug.roll, aug.roll)), expressions=amounts,
                      mouth_open=float(rng.uniform(0, aug.mouth_open)), blink=float(rng.uniform(-aug.blink, aug.blink)),
                      brow_raise=float(rng.uniform(-aug.brow_raise, aug.brow_raise)))


def edited_points(fit: FaceFit, params: EditParams, model) -> np.ndarray:
    """(68, 2) pixels of the fitted face after params: predict_landmarks without re-fitting."""
    pose = [float(np.clip(getattr(fit, axis) + getattr(params, axis), -LIMITS[axis], LIMITS[axis]))
            for axis in ("yaw", "pitch", "roll")]
    rotation = rotation_matrix(*pose)
    shape = edited_shape(fit.shape, params, model) + contour_sliding(model, rotation)[0]
    return project(shape, rotation, fit.scale, fit.translation)


def jitter(points: np.ndarray, rng: np.random.Generator, aug: Augmentation) -> np.ndarray:
    angle = np.radians(rng.uniform(-aug.rotation, aug.rotation))
    scale = 1.0 + rng.uniform(-aug.scale, aug.scale)
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([CANVAS / 2 - 0.5, CANVAS / 2 - 0.5])
    out = (points - centre) @ rot.T + centre + rng.uniform(-aug.shift, aug.shift, size=2)
    return out + rng.normal(0.0, aug.noise, size=out.shape)


def landmark_sets(count: int, seed: int = 0, faces: list[FaceLandmarks] | None = None,
                  aug: Augmentation | None = None) -> torch.Tensor:
    """(count, 68, 2) float32 pixel landmark sets on the 512 canvas."""
    aug = aug or Augmentation()
    rng = np.random.default_rng(seed)
    model = load_face_model()
    fits = [fit_face(face, model) for face in (faces or base_faces())]
    out = np.empty((count, 68, 2))
    for i in range(count):
        points = edited_points(fits[rng.integers(len(fits))], random_params(rng, aug), model)
        out[i] = jitter(points, rng, aug).clip(-0.5, CANVAS - 0.5)
    return torch.from_numpy(out).float()
