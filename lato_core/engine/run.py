"""One LaTo edit: landmark tokens, text conditioning and the source latent in, the edited latent out.

Latents cross this boundary in ComfyUI's raw form (what the core VAEEncode returns and VAEDecode takes);
FLUX's scale and shift are applied here, as ComfyUI's own samplers do through the model's latent format.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import FaceEditError
from ..face.landmarks import FaceLandmarks
from ..sampler import guidance as guidance_modes
from ..sampler.euler import sample
from ..sampler.packing import grid_hw_for_latent, pack_latents, unpack_latents
from ..text.encode import TextConditioning
from ..tokenizer.loading import points_to_tokens_input
from ..tokenizer.model import LandmarkTokenizer
from ..vae import normalise_latent, raw_latent
from .model import LaToModel

GUIDANCE_MODES = guidance_modes.MODES


@dataclass
class LandmarkTokens:
    """Quantized landmarks of a batch of crops: what the LandmarkTokenizer node hands to the sampler."""
    indices: torch.Tensor      # (B, 68) codebook indices
    codes: torch.Tensor        # (B, 68, code_dim) codebook rows, fed to landmark_in
    xy: torch.Tensor           # (B, 68, 2) pixel (x, y) on the crop canvas
    visible: torch.Tensor      # (B, 68) bool; hidden points are left out of the DiT's sequence
    canvas_hw: tuple[int, int]


def tokenize_landmarks(tokenizer: LandmarkTokenizer, faces: list[FaceLandmarks]) -> LandmarkTokens:
    if not faces:
        raise FaceEditError("No landmarks to tokenize.")
    sizes = {f.image_size for f in faces}
    if len(sizes) != 1:
        raise FaceEditError(f"All landmarks must be on one canvas size to be tokenized together, got {sorted(sizes)}.")
    width, height = sizes.pop()
    faces = sorted(faces, key=lambda f: f.image_index)
    points = torch.from_numpy(np.stack([f.points for f in faces])).float()
    indices, codes = tokenizer.encode(points_to_tokens_input(points, (width, height)).to(tokenizer.device))
    visible = torch.from_numpy(np.stack([f.visibility > 0 for f in faces]))
    return LandmarkTokens(indices.cpu(), codes.float().cpu(), points, visible, (height, width))


def _on(text: TextConditioning, device: torch.device) -> TextConditioning:
    return replace(text, hidden=text.hidden.to(device), mask=text.mask.to(device), pooled=text.pooled.to(device))


def _landmark_condition(tokens: LandmarkTokens | None, batch: int, device, dtype,
                        release_height_only_scaling: bool) -> guidance_modes.LandmarkCondition | None:
    if tokens is None:
        return None
    if tokens.codes.shape[0] not in (1, batch):
        raise FaceEditError(f"{tokens.codes.shape[0]} landmark sets for {batch} source crops; give one per crop.")
    return guidance_modes.LandmarkCondition(tokens.codes.to(device, dtype), tokens.xy.to(device), tokens.visible.to(device),
                                            tuple(float(v) for v in tokens.canvas_hw), release_height_only_scaling)


def edit_latent(model: LaToModel, cond: TextConditioning, uncond: TextConditioning | None,
                landmarks: LandmarkTokens | None, source_latent: torch.Tensor, seed: int, steps: int = 28,
                mode: str = "release", scale: float = 4.0, geometry_scale: float = 4.0, shift: float | None = None,
                release_height_only_scaling: bool = False, null_tokens: torch.Tensor | None = None,
                device: torch.device | str = "cpu", offload_device: torch.device | str = "cpu",
                callback=None, interrupt=None) -> torch.Tensor:
    """Edited raw latent (B, 16, h, w) from the raw source latent of the crops (B, 16, h, w).

    Landmark-aware guidance uses null_tokens, else the model's learned ones, else leaves the landmarks out.
    """
    if mode not in GUIDANCE_MODES:
        raise FaceEditError(f"Unknown guidance mode '{mode}'; choose one of {', '.join(GUIDANCE_MODES)}.")
    if source_latent.ndim != 4 or source_latent.shape[1] != 16:
        raise FaceEditError(f"LaTo needs a FLUX latent (B, 16, h, w) from VAEEncode with the FLUX VAE, got "
                            f"{tuple(source_latent.shape)}. Load LaTo's vae.safetensors with the core VAELoader.")
    if mode != "none" and uncond is None:
        raise FaceEditError(f"Guidance mode '{mode}' needs the unconditional (empty prompt) encoding.")
    device = torch.device(device)
    grid_hw = grid_hw_for_latent(source_latent)
    packed = pack_latents(normalise_latent(source_latent)).to(device)
    null_tokens = null_tokens if null_tokens is not None else model.null_tokens
    if null_tokens is not None:
        null_tokens = null_tokens.to(device, model.compute_dtype)
    guidance = guidance_modes.make_guidance(mode, scale, geometry_scale, null_tokens)
    landmark_condition = _landmark_condition(landmarks, packed.shape[0], device, model.compute_dtype,
                                             release_height_only_scaling)
    with model.ready(device, offload_device) as dit:
        edited = sample(dit, int(seed), packed, _on(cond, device), _on(uncond, device) if uncond else None,
                        landmark_condition, grid_hw=grid_hw, steps=steps, guidance=guidance, shift=shift,
                        callback=callback, interrupt=interrupt)
    return raw_latent(unpack_latents(edited, grid_hw).cpu())
