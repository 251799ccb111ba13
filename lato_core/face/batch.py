"""Batch-level face functions on ComfyUI-shaped tensors: IMAGE (B, H, W, C) float, MASK (B, H, W).

Faces travel as a flat list of FaceLandmarks, each tagged with the batch index of its image.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import FaceEditError
from .detect import DetectOptions, detect_and_select
from .draw import draw_landmarks
from .landmarks import FaceLandmarks
from .regions import parse_region_names, region_mask


def detect_batch(images: torch.Tensor, options: DetectOptions, selection: str, index: int, order: str,
                 on_no_face: str = "error") -> list[FaceLandmarks]:
    return detect_and_select(list(images), options, selection, index, order, on_no_face)


def faces_of(faces: list[FaceLandmarks], image_index: int) -> list[FaceLandmarks]:
    return [f for f in faces if f.image_index == image_index]


BLANK_CANVAS_PIXELS = 64_000_000  # all black canvases of one Draw / Mask call together (no image connected)


def batch_count(faces: list[FaceLandmarks], images: torch.Tensor | None = None) -> int:
    """Images in the batch; every face must refer to one of them (an index past the batch is refused)."""
    count = images.shape[0] if images is not None else max((f.image_index for f in faces), default=0) + 1
    beyond = sorted({f.image_index for f in faces if not 0 <= f.image_index < count})
    if beyond:
        raise FaceEditError(f"Landmarks refer to image(s) {beyond[:5]}, but the batch has {count} image(s) "
                            f"(indices 0..{count - 1}). Connect the images the landmarks came from, or fix image_index.")
    return count


def check_blank_canvases(count: int, size: tuple[int, int]) -> None:
    """Refuse drawing on more black canvas than BLANK_CANVAS_PIXELS (e.g. an image_size of 1e6 x 1e6)."""
    w, h = size
    if count * w * h > BLANK_CANVAS_PIXELS:
        raise FaceEditError(f"Drawing {count} canvas(es) of {w}x{h} needs {count * w * h / 1e6:.0f} MP; the limit is "
                            f"{BLANK_CANVAS_PIXELS // 1_000_000} MP. Connect the image to draw on, or fix image_size "
                            "and image_index in the landmarks.")


def draw_batch(faces: list[FaceLandmarks], images: torch.Tensor | None = None, radius: float | None = None,
               lines: bool = True, numbers: bool = False) -> torch.Tensor:
    """(B, H, W, 3) drawings; over `images` when given, else on black canvases of the landmarks' size."""
    count = batch_count(faces, images)
    if images is None:
        check_blank_canvases(count, max((f.image_size for f in faces), default=(512, 512), key=lambda s: s[0] * s[1]))
    pictures = []
    for i in range(count):
        mine = faces_of(faces, i)
        base = images[i] if images is not None else None
        size = mine[0].image_size if mine else (faces[0].image_size if faces else None)
        pictures.append(draw_landmarks(mine, base, size=size, radius=radius, lines=lines, numbers=numbers))
    return torch.from_numpy(np.stack(pictures)).float().div_(255.0)


def mask_batch(faces: list[FaceLandmarks], regions: str, grow: float = 0.0, hull: bool = False,
               feather: float = 0.0, num_images: int | None = None) -> torch.Tensor:
    """(B, H, W) masks of the named regions, one per image (all of its faces together)."""
    names = parse_region_names(regions)
    if not faces:
        raise FaceEditError("No landmarks to make a mask from: the landmarks input is empty.")
    count = batch_count(faces, torch.empty(num_images) if num_images else None)
    size = faces[0].image_size
    if not num_images:
        check_blank_canvases(count, size)
    masks = [region_mask(faces_of(faces, i), names, size, grow, hull, feather) if faces_of(faces, i)
             else np.zeros((size[1], size[0]), np.float32) for i in range(count)]
    return torch.from_numpy(np.stack(masks))


def mask_preview(masks: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
    """The mask in red over the image (or over black)."""
    base = images[..., :3] * 0.6 if images is not None else torch.zeros(*masks.shape, 3)
    red = torch.tensor([1.0, 0.15, 0.1])
    m = masks[..., None]
    return (base * (1 - 0.6 * m) + 0.6 * m * red).clamp(0, 1)


def caption_batch(pictures: torch.Tensor, faces: list[FaceLandmarks], notes: list[list[str]]) -> torch.Tensor:
    """(B, H, W, 3) pictures with each face's notes (notes[j] belongs to faces[j]) printed on its image."""
    from .draw import with_caption

    out = []
    for i, picture in enumerate(pictures):
        lines = [line for face, lines in zip(faces, notes) if face.image_index == i for line in lines]
        if not lines:
            out.append(picture)
            continue
        array = (picture.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        out.append(torch.from_numpy(with_caption(array, lines)).float().div_(255.0))
    return torch.stack(out) if out else pictures
