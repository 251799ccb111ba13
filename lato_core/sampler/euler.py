"""Flow-matching Euler sampler of the release: x <- x + (t_prev - t) * v over the shifted schedule, t from 1 to 0.

The state and the update stay in fp32 whatever the model dtype (bf16 models get their inputs cast inside).
"""
from __future__ import annotations

from typing import Callable

import torch

from .guidance import Guidance, LandmarkCondition, ReleaseCFG, TextInput, guided_velocity, resolve_text
from .packing import pack_latents
from .schedule import flow_schedule

LATENT_CHANNELS = 16

StepCallback = Callable[[int, int, torch.Tensor], None]


def seeded_noise(seed: int, batch: int, grid_hw: tuple[int, int], channels: int = LATENT_CHANNELS,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Packed (B, N, channels*4) fp32 noise, drawn as an unpacked (B, channels, 2*rows, 2*cols) latent on a CPU
    torch.Generator (same numbers on every device; same draw as ComfyUI's noise for that latent), then moved."""
    rows, cols = grid_hw
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    latent = torch.randn(batch, channels, 2 * rows, 2 * cols, generator=generator, dtype=torch.float32)
    return pack_latents(latent).to(device)


def sample(model, noise_or_seed: torch.Tensor | int, source_latent_packed: torch.Tensor | None,
           text_cond: TextInput, text_uncond: TextInput | None = None,
           landmarks: LandmarkCondition | None = None, *, grid_hw: tuple[int, int], steps: int = 28,
           guidance: Guidance = ReleaseCFG(4.0), shift: float | None = None, mu: float | None = None,
           callback: StepCallback | None = None, interrupt: Callable[[], None] | None = None) -> torch.Tensor:
    """Denoise from t = 1 to t = 0 and return the packed clean latent (B, N, 64) in fp32.

    model: Step1XEditDiT-like callable (img_noisy, img_source, timesteps, txt, y, *, grid_hw, landmark_...).
    noise_or_seed: packed noise (B, N, 64), or an int seed (see seeded_noise; B from the source latent).
    source_latent_packed: (B or 1, N, 64) scaled VAE latent of the source photo, or None.
    text_cond / text_uncond: instruction / empty prompt as (txt, y), a callable t -> (txt, y), or an object with
    .tokens(t) and .pooled (TextConditioning; the connector depends on t, given as a (1,) fp32 tensor).
    text_uncond may be None for 'none' guidance.
    landmarks: tokens, positions and visibility shared by the guidance branches (None: no landmark stream).
    shift / mu: schedule overrides (see schedule.flow_schedule); default mu from N.
    callback(step, steps, x): after every step, step = 0 .. steps-1, x the current packed fp32 state.
    interrupt(): called before every step; it raises to stop sampling (e.g. ComfyUI's interrupt check).
    """
    rows, cols = grid_hw
    num_tokens = rows * cols
    device = _device(noise_or_seed, source_latent_packed, model, text_cond)
    if isinstance(noise_or_seed, torch.Tensor):
        x = noise_or_seed.to(device=device, dtype=torch.float32)
    else:
        batch = source_latent_packed.shape[0] if source_latent_packed is not None else 1
        x = seeded_noise(noise_or_seed, batch, grid_hw, device=device)
    if x.ndim != 3 or x.shape[1] != num_tokens:
        raise ValueError(f"noise {tuple(x.shape)} does not match grid {rows}x{cols} ({num_tokens} tokens)")
    if source_latent_packed is not None and source_latent_packed.shape[1:] != x.shape[1:]:
        raise ValueError(f"source latent {tuple(source_latent_packed.shape)} does not match noise {tuple(x.shape)}")

    times = flow_schedule(steps, num_tokens, shift=shift, mu=mu).tolist()
    for step in range(steps):
        if interrupt is not None:
            interrupt()
        t, t_prev = times[step], times[step + 1]
        t_tensor = torch.tensor([t], dtype=torch.float32, device=device)
        needed = {branch.text for branch in guidance.branches()}   # run each connector only when used
        text = {name: resolve_text(source, t_tensor) for name, source in
                (("cond", text_cond), ("uncond", text_uncond)) if name in needed and source is not None}
        v = guided_velocity(model, guidance, x, source_latent_packed, t, text, landmarks, grid_hw)
        x = x + (t_prev - t) * v
        if callback is not None:
            callback(step, steps, x)
    return x


def _device(noise, source, model, text_cond) -> torch.device:
    """Where to sample: the noise's, source's, model's or text's device, in that order; else CPU."""
    for tensor in (noise, source):
        if isinstance(tensor, torch.Tensor):
            return tensor.device
    parameter = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    if parameter is not None:
        return parameter.device
    if isinstance(text_cond, tuple):
        return text_cond[0].device
    pooled = getattr(text_cond, "pooled", None)
    return pooled.device if isinstance(pooled, torch.Tensor) else torch.device("cpu")
