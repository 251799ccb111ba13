"""Square face crops on LaTo's 512 canvas, and pasting edited crops back into the full photo.

The crop is FFHQ-like: centred between the eyes and the mouth, side = scale * max(2 * eye distance,
1.8 * eye-to-mouth distance) / 2 * 2, optionally rotated so the eyes are level. A CropTransform keeps
the 2x3 matrix from photo pixels to crop pixels so that stitching can invert it exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FaceEditError
from .landmarks import FaceLandmarks
from .affine import apply_affine, compose_affine, invert_affine, warp_affine

STITCH_MODES = ("replace", "keep_detail")


@dataclass
class CropTransform:
    matrix: np.ndarray          # 2x3, photo pixel -> crop pixel
    crop_size: int
    image_size: tuple[int, int]  # (width, height) of the photo
    image_index: int = 0

    def to_dict(self) -> dict:
        return {"matrix": np.asarray(self.matrix).tolist(), "crop_size": self.crop_size,
                "image_size": list(self.image_size), "image_index": self.image_index}

    @classmethod
    def from_dict(cls, d: dict) -> "CropTransform":
        return cls(np.asarray(d["matrix"], dtype=np.float64), int(d["crop_size"]), tuple(d["image_size"]), int(d["image_index"]))


def crop_matrix(face: FaceLandmarks, size: int = 512, scale: float = 2.0, offset_x: float = 0.0,
                offset_y: float = 0.0, align_roll: bool = False) -> np.ndarray:
    right_eye, left_eye = face.eye_centres()
    eye_avg = (right_eye + left_eye) / 2
    mouth_avg = face.points[48:68].mean(axis=0)
    eye_to_eye = left_eye - right_eye
    eye_to_mouth = mouth_avg - eye_avg
    half = max(np.linalg.norm(eye_to_eye) * 2.0, np.linalg.norm(eye_to_mouth) * 1.8)
    side = scale * half
    if side < 4:
        raise FaceEditError(f"The face is too small to crop ({side:.1f} px across); use a larger photo.")
    angle = math.atan2(eye_to_eye[1], eye_to_eye[0]) if align_roll else 0.0
    cos, sin = math.cos(angle), math.sin(angle)
    # Offsets are fractions of the crop side, along the (possibly rotated) crop axes.
    centre = eye_avg + eye_to_mouth * 0.1 + side * (offset_x * np.array([cos, sin]) + offset_y * np.array([-sin, cos]))
    k = size / side
    rot = np.array([[cos, sin], [-sin, cos]]) * k
    t = (size - 1) / 2 - rot @ centre
    return np.column_stack([rot, t])


def _to_bchw(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2)


def _to_bhwc(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 2, 3, 1)


def crop_faces(images: torch.Tensor, faces: list[FaceLandmarks], size: int = 512, scale: float = 2.0,
               offset_x: float = 0.0, offset_y: float = 0.0, align_roll: bool = False):
    """Crops (N, size, size, C), their transforms, and the landmarks mapped into each crop.

    Parts of a crop beyond the photo repeat its edge pixels; landmarks that fall outside the crop are
    clamped to it and marked invisible.
    """
    crops, transforms, mapped = [], [], []
    for face in faces:
        if not 0 <= face.image_index < images.shape[0]:
            raise FaceEditError(f"Landmarks refer to image {face.image_index}, but the batch has {images.shape[0]} image(s).")
        img = images[face.image_index]
        if (img.shape[1], img.shape[0]) != face.image_size:
            raise FaceEditError(
                f"Landmarks were found on a {face.image_size[0]}x{face.image_size[1]} image, but this image is "
                f"{img.shape[1]}x{img.shape[0]}. Connect the image the landmarks came from.")
        m = crop_matrix(face, size, scale, offset_x, offset_y, align_roll)
        out, _ = warp_affine(_to_bchw(img[None]), m, (size, size))
        crops.append(_to_bhwc(out)[0])
        transforms.append(CropTransform(m, size, face.image_size, face.image_index))
        pts = apply_affine(m, face.points)
        inside = (pts >= -0.5).all(axis=1) & (pts <= size - 0.5).all(axis=1)
        pts = pts.clip(-0.5, size - 0.5)
        mapped.append(face.with_points(pts, image_size=(size, size), visibility=face.visibility * inside,
                                       image_index=len(mapped)))
    if not crops:
        raise FaceEditError("No face to crop: the landmarks input is empty.")
    return torch.stack(crops), transforms, mapped


def border_feather(size: int, feather: float, device=None) -> torch.Tensor:
    """(size, size) weights: 1 inside, a smooth ramp to 0 over `feather` pixels at the crop border."""
    if feather <= 0:
        return torch.ones(size, size, device=device)
    d = torch.arange(size, dtype=torch.float32, device=device)
    edge = torch.minimum(d, size - 1 - d)
    ramp = ((edge + 0.5) / feather).clamp(0, 1)
    ramp = 0.5 - 0.5 * torch.cos(math.pi * ramp)
    return ramp[:, None] * ramp[None, :]


def match_colour(edited: torch.Tensor, reference: torch.Tensor, weight: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Per-channel mean/std transfer of edited (C, H, W) onto reference statistics, over weight > 0.5."""
    sel = weight[0] > 0.5
    if strength <= 0 or sel.sum() < 16:
        return edited
    out = edited.clone()
    for c in range(edited.shape[0]):
        e, r = edited[c][sel], reference[c][sel]
        scaled = (edited[c] - e.mean()) * (r.std() / e.std().clamp_min(1e-4)) + r.mean()
        out[c] = edited[c] + strength * (scaled - edited[c])
    return out.clamp(0, 1)


def _footprint(t: CropTransform, width: int, height: int) -> tuple[int, int, int, int]:
    s = t.crop_size
    corners = apply_affine(invert_affine(t.matrix), np.array([[-0.5, -0.5], [s - 0.5, -0.5], [-0.5, s - 0.5], [s - 0.5, s - 0.5]]))
    x0 = max(0, int(math.floor(corners[:, 0].min())))
    y0 = max(0, int(math.floor(corners[:, 1].min())))
    x1 = min(width, int(math.ceil(corners[:, 0].max())) + 1)
    y1 = min(height, int(math.ceil(corners[:, 1].max())) + 1)
    return x0, y0, x1, y1


def stitch_faces(images: torch.Tensor, crops: torch.Tensor, transforms: list[CropTransform],
                 masks: torch.Tensor | None = None, feather: float = 24.0, colour_match: float = 0.0,
                 mode: str = "replace", antialias: bool = False) -> torch.Tensor:
    """Paste crops (N, S, S, C) back into a copy of images (B, H, W, C) through their transforms.

    masks (N, S, S), optional, limit the paste to the edited region (1 = paste). mode 'replace' pastes the
    crop; 'keep_detail' adds only the change between the crop and the original crop, so the photo keeps
    detail finer than the 512 canvas where the edit did not move anything. antialias low-passes a crop
    that is pasted smaller than it is (off by default: an unedited crop then round-trips almost exactly).
    """
    check_stitch_inputs(images, crops, transforms, masks, mode)
    out = images.clone()
    channels = min(3, images.shape[-1])  # colour channels pasted; a photo's alpha is kept as it is
    height, width = images.shape[1:3]
    for i, t in enumerate(transforms):
        s = t.crop_size
        crop = _colour_channels(crops[i], channels)
        if crop.shape[0] != s:  # an edit returned another size: rescale to the canvas the transform expects
            crop = _to_bhwc(F.interpolate(_to_bchw(crop[None]), size=(s, s), mode="bicubic", antialias=True))[0].clamp(0, 1)
        photo = out[t.image_index][..., :channels]
        weight = border_feather(s, feather, crops.device)
        if masks is not None:
            mask = masks[min(i, masks.shape[0] - 1)].to(weight)
            if mask.shape != weight.shape:
                mask = F.interpolate(mask[None, None], size=(s, s), mode="bilinear")[0, 0]
            weight = weight * mask
        edited = _to_bchw(crop[None])[0].to(photo.dtype)
        if colour_match > 0 or mode == "keep_detail":
            original, _ = warp_affine(_to_bchw(images[t.image_index][None, ..., :channels]), t.matrix, (s, s))
            original = original[0]
            edited = match_colour(edited, original, weight[None], colour_match)
            if mode == "keep_detail":
                edited = edited - original
        x0, y0, x1, y1 = _footprint(t, width, height)
        to_box = compose_affine(np.array([[1.0, 0, -x0], [0, 1.0, -y0]]), invert_affine(t.matrix))
        delta = mode == "keep_detail"
        pasted, inside = warp_affine(edited[None], to_box, (y1 - y0, x1 - x0), clamp=not delta, antialias=antialias)
        w, _ = warp_affine(weight[None, None], to_box, (y1 - y0, x1 - x0), mode="bilinear", padding="zeros",
                           antialias=antialias)
        w = (w * inside)[0, 0, :, :, None]
        region = photo[y0:y1, x0:x1]
        pasted = _to_bhwc(pasted)[0]
        if delta:
            region = (region + w * pasted).clamp(0, 1)
        else:
            region = region * (1 - w) + pasted * w
        photo = photo.clone()
        photo[y0:y1, x0:x1] = region
        out[t.image_index, ..., :channels] = photo
    return out


def _colour_channels(crop: torch.Tensor, channels: int) -> torch.Tensor:
    """A crop's colour as `channels` (1 or 3) channels: alpha dropped, gray repeated or RGB averaged."""
    colour = crop[..., :3] if crop.shape[-1] >= 3 else crop[..., :1].expand(*crop.shape[:-1], 3)
    return colour.mean(dim=-1, keepdim=True) if channels == 1 else colour


def check_stitch_inputs(images: torch.Tensor, crops: torch.Tensor, transforms: list[CropTransform],
                        masks: torch.Tensor | None, mode: str) -> None:
    """Every reason stitching could fail, checked before any pixel is pasted."""
    if mode not in STITCH_MODES:
        raise FaceEditError(f"Unknown stitch mode '{mode}'; choose one of {', '.join(STITCH_MODES)}.")
    for name, t in (("image", images), ("crops", crops)):
        if t.ndim != 4 or t.shape[-1] not in (1, 3, 4):
            raise FaceEditError(f"'{name}' must be an IMAGE batch (B, H, W, C) with 1, 3 or 4 channels, got shape "
                                f"{tuple(t.shape)}.")
    if crops.shape[0] != len(transforms):
        raise FaceEditError(f"Got {crops.shape[0]} crop(s) but {len(transforms)} crop transform(s); connect the "
                            "crop info from the same Face Crop node that made these crops.")
    height, width = images.shape[1:3]
    for i, t in enumerate(transforms):
        if not 0 <= t.image_index < images.shape[0]:
            raise FaceEditError(f"Crop {i} belongs to image {t.image_index}, but the batch to paste into has "
                                f"{images.shape[0]} image(s). Connect the photo(s) the crops were cut from.")
        if (width, height) != tuple(t.image_size):
            raise FaceEditError(f"Crop {i} was cut from a {t.image_size[0]}x{t.image_size[1]} image, but the image to "
                                f"paste into is {width}x{height}. Connect the photo the crops were cut from.")
    if crops.shape[1] != crops.shape[2]:
        raise FaceEditError(f"The crops are {crops.shape[2]}x{crops.shape[1]}; stitching needs the square crops Face "
                            "Crop made (an edit may change their size, not their shape).")
    if masks is not None and (masks.ndim != 3 or masks.shape[0] == 0):
        raise FaceEditError(f"'mask' must be a MASK batch (B, H, W) in crop space, got shape {tuple(masks.shape)}.")
