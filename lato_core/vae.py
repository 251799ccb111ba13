"""FLUX autoencoder for LaTo: pixels (B, H, W, 3) in 0..1 <-> normalised latents (B, 16, H/8, W/8).

The sampler works on normalised latents z_n = (z - shift) * scale (scale 0.3611, shift 0.1159), z being the
posterior mean (default) or a posterior sample. FluxVAE is diffusers' AutoencoderKL loaded from a BFL-key
vae.safetensors (encoder.*, decoder.*), keys converted by diffusers' own convert_ldm_vae_checkpoint and checked
strictly (errors name the file and the keys); it serves the standalone engine. Inside ComfyUI, core's VAELoader
loads the same file and the native model's FLUX latent format applies the scale and shift.
"""
from __future__ import annotations

import os

import torch

from .checkpoint_check import check_layout, shapes_of, strip_prefixes
from .errors import ImageFormatError, ModelFileError

FLUX_VAE_SCALE = 0.3611
FLUX_VAE_SHIFT = 0.1159
FLUX_AUTOENCODER_CONFIG = {  # FLUX.1 ae: ch 128, ch_mult (1, 2, 4, 4), 2 res blocks, z 16, no quant convs
    "in_channels": 3, "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "act_fn": "silu",
    "latent_channels": 16, "norm_num_groups": 32, "sample_size": 1024,
    "scaling_factor": FLUX_VAE_SCALE, "shift_factor": FLUX_VAE_SHIFT,
    "use_quant_conv": False, "use_post_quant_conv": False,
}
WRAPPER_PREFIXES = ("first_stage_model.", "vae.", "ae.")


def normalise_latent(raw: torch.Tensor, scale: float = FLUX_VAE_SCALE, shift: float = FLUX_VAE_SHIFT) -> torch.Tensor:
    """Raw VAE latent (what ComfyUI's VAE returns) -> the sampler's (z - shift) * scale, fp32."""
    return (raw.float() - shift) * scale


def raw_latent(normalised: torch.Tensor, scale: float = FLUX_VAE_SCALE, shift: float = FLUX_VAE_SHIFT) -> torch.Tensor:
    """The inverse of normalise_latent."""
    return normalised.float() / scale + shift


def _pixels_bchw(pixels: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) or (H, W, 3) in 0..1 -> (B, 3, H, W) in -1..1; an alpha channel is dropped."""
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4 or pixels.shape[-1] not in (3, 4):
        raise ImageFormatError(f"expected an image (B, H, W, 3) with values 0..1, got shape {tuple(pixels.shape)}")
    return pixels[..., :3].movedim(-1, 1) * 2.0 - 1.0


class FluxVAE:
    """diffusers AutoencoderKL plus the latent normalisation (scale/shift from its config)."""

    def __init__(self, autoencoder, scale: float | None = None, shift: float | None = None):
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        config = autoencoder.config
        self.scale = float(scale if scale is not None else config.scaling_factor)
        self.shift = float(shift if shift is not None else (config.shift_factor or 0.0))

    @property
    def device(self) -> torch.device:
        return next(self.autoencoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.autoencoder.parameters()).dtype

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, *, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels (B, H, W, 3) 0..1 -> (z - shift) * scale, fp32; z = posterior mean, or a sample if asked."""
        x = _pixels_bchw(pixels).to(device=self.device, dtype=self.dtype)
        posterior = self.autoencoder.encode(x).latent_dist
        z = posterior.sample(generator) if sample else posterior.mean
        return normalise_latent(z, self.scale, self.shift)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent (B, 16, h, w) -> pixels (B, 8h, 8w, 3) in 0..1, fp32."""
        z = raw_latent(latent, self.scale, self.shift)
        image = self.autoencoder.decode(z.to(device=self.device, dtype=self.dtype)).sample
        return ((image.float() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1)


def load_flux_vae(path: str | os.PathLike, *, config: dict | None = None, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> FluxVAE:
    """Load a FLUX autoencoder in BFL keys (e.g. LaTo's lato/vae.safetensors or FLUX.1's ae.safetensors)."""
    from safetensors.torch import load_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"VAE file not found: {path}. Download lato/vae.safetensors from the LaTo release "
                           "and put it in ComfyUI's models/vae/ folder.")
    try:
        state = load_file(path)
    except Exception as error:  # safetensors raises its own error types
        raise ModelFileError(f"cannot read {path} as safetensors: {error}") from error
    autoencoder = autoencoder_from_bfl_state(state, config, source=path)
    return FluxVAE(autoencoder.to(device=device, dtype=dtype))


def autoencoder_from_bfl_state(state: dict[str, torch.Tensor], config: dict | None = None,
                               source: str = "the VAE state dict"):
    """AutoencoderKL (FLUX config unless `config`) with weights from a BFL/LDM-key state dict, strictly checked.
    A state dict already in diffusers keys (encoder.down_blocks.*) is taken as is."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    config = dict(FLUX_AUTOENCODER_CONFIG if config is None else config)
    state = strip_prefixes(state, WRAPPER_PREFIXES)
    if not any(key.startswith(("encoder.", "decoder.")) for key in state):
        raise ModelFileError(f"{source} has no encoder.* / decoder.* keys, so it is not a FLUX VAE "
                           f"(first keys: {sorted(state)[:5]}). Pick the vae.safetensors of the LaTo release.")
    diffusers_layout = any(".down_blocks." in key or ".up_blocks." in key for key in state)
    converted = dict(state) if diffusers_layout else convert_ldm_vae_checkpoint(state, config)

    autoencoder = AutoencoderKL(**config)
    expected = autoencoder.state_dict()
    ignored = len(state) - len(converted)
    check_layout(source, shapes_of(converted), shapes_of(expected),
                 f"the FLUX autoencoder ({config['latent_channels']} latent channels, blocks "
                 f"{tuple(config['block_out_channels'])}); keys below in diffusers names",
                 "Use lato/vae.safetensors from the LaTo release (or FLUX.1's ae.safetensors) in models/vae/.",
                 [f"  {ignored} keys were not recognised by the BFL->diffusers key conversion"] if ignored > 0 else [])
    autoencoder.load_state_dict({key: converted[key].float() for key in expected}, strict=True)
    return autoencoder.eval().requires_grad_(False)
