"""The LaTo diffusion engine for the evaluation runner, loaded from a ComfyUI-style models/ folder."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..engine.model import load_lato_model
from ..engine.run import edit_latent, tokenize_landmarks
from ..engine.text_encoder import encode_edit, load_text_encoder
from ..errors import FaceEditError
from ..tokenizer.loading import load_tokenizer
from ..vae import load_flux_vae, normalise_latent, raw_latent

# The LaTo release's files where the README's model table puts them.
RELEASE_LAYOUT = {
    "dit": "diffusion_models/lato.safetensors",
    "adapter": "lato/landmark_in.pth",
    "lora": "loras/lato.safetensors",
    "tokenizer": "lato/Po_VQVAE/model.safetensors",
    "text_encoder": "text_encoders/Qwen2.5-VL-7B-Instruct",
    "vae": "vae/vae.safetensors",
}
OPTIONAL = ("adapter", "lora")


@dataclass
class LaToFiles:
    dit: Path
    tokenizer: Path
    text_encoder: Path
    vae: Path
    adapter: Path | None = None
    lora: Path | None = None

    @classmethod
    def from_models_dir(cls, models_dir: str | os.PathLike, **overrides: str) -> "LaToFiles":
        """The release layout under models_dir; overrides give other relative paths per role."""
        base = Path(models_dir)
        paths = {role: base / overrides.get(role, rel) for role, rel in RELEASE_LAYOUT.items()}
        missing = [f"{role}: {p}" for role, p in paths.items() if role not in OPTIONAL and not p.exists()]
        if missing:
            raise FaceEditError("The LaTo engine is missing files (see the README's model table): " + "; ".join(missing))
        return cls(**{role: (p if p.exists() else None) for role, p in paths.items()})


def make_lato_engine(files: LaToFiles, steps: int = 28, seed: int = 0, mode: str = "release", scale: float = 4.0,
                     lora_strength: float = 1.0, device: str | None = None):
    """An engine fn(crop (H, W, 3) 0..1, source, target landmarks, instruction) -> edited crop (H, W, 3)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    storage = "bf16" if device.type == "cuda" else "fp32"
    dtype = torch.bfloat16 if storage == "bf16" else torch.float32
    model = load_lato_model(files.dit, files.adapter, storage=storage, compute_dtype=dtype)
    if files.lora is not None and lora_strength:
        model = model.with_lora(str(files.lora), lora_strength)
    tokenizer = load_tokenizer(files.tokenizer, decoder=False)
    encoder = load_text_encoder(files.text_encoder, device="cpu")
    vae = load_flux_vae(files.vae, device=device, dtype=dtype)

    def engine(crop: torch.Tensor, source, target, instruction: str) -> torch.Tensor:
        crops = crop[None].float()
        cond, uncond = encode_edit(encoder, model, instruction, crops, device)
        tokens = tokenize_landmarks(tokenizer, [replace(target, image_index=0)])
        raw = raw_latent(vae.encode(crops), vae.scale, vae.shift)   # the engine takes ComfyUI's raw latents
        edited = edit_latent(model, cond, uncond, tokens, raw, seed, steps, mode, scale, device=device)
        return vae.decode(normalise_latent(edited, vae.scale, vae.shift))[0].cpu()

    return engine
