"""The STFG GUIDER for SamplerCustomAdvanced: ComfyUI's CFGGuider + Skin Transition Frequency Guidance on the
boundary region + Blended Diffusion through ComfyUI's denoise mask. ComfyUI is imported inside functions only.

At strength 0 nothing is patched and every step is CFGGuider's own (bit for bit with blend off).
"""
from __future__ import annotations

import functools
import logging

import torch

from .comfy_patches import install_recorders
from .stfg_stepper import STFGStepper

log = logging.getLogger(__name__)


@functools.cache
def guider_class():
    import comfy.samplers

    class STFGCFGGuider(comfy.samplers.CFGGuider):
        stepper: STFGStepper
        blend: bool
        source_override: torch.Tensor | None

        def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
                   seed=None):
            if denoise_mask is None and self.blend:
                denoise_mask = self.stepper.mask.reshape(-1, 1, *self.stepper.mask.shape[-2:])
            try:
                return super().sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)
            finally:
                self.stepper.reset()

        def inner_sample(self, noise, latent_image, device, sampler, sigmas, *args, **kwargs):
            source = latent_image if self.source_override is None else self.source_override
            self.stepper.reset(self.inner_model.process_latent_in(source.to(device)))
            return super().inner_sample(noise, latent_image, device, sampler, sigmas, *args, **kwargs)

        def predict_noise(self, x, timestep, model_options={}, seed=None):
            if not self.stepper.active(timestep):
                return super().predict_noise(x, timestep, model_options, seed)

            def predict(z, t):
                return comfy.samplers.sampling_function(self.inner_model, z, t, self.conds.get("negative"),
                                                        self.conds.get("positive"), self.cfg, model_options, seed)
            out = self.stepper(x, timestep, predict, self.inner_model)
            log.debug("STFG sigma %.3f: %d boundary px, g = %.5f", float(timestep.reshape(-1)[0]),
                      int(self.stepper.last_boundary.sum()), float(self.stepper.last_loss))
            return out

    return STFGCFGGuider


def stfg_guider(model_patcher, positive, negative, cfg: float, stepper: STFGStepper, blend: bool = True,
                source_latent: torch.Tensor | None = None, maps: str = "unet"):
    """A GUIDER on a clone of model_patcher. maps: where the text attention is recorded ("unet" or "refnet")."""
    work = model_patcher.clone()
    if stepper.strength != 0:
        install_recorders(work, stepper.recorder, maps)
    guider = guider_class()(work)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    guider.stepper, guider.blend, guider.source_override = stepper, blend, source_latent
    return guider


def clip_prompt_positions(clip, text: str) -> list[int]:
    """Positions of `text`'s own tokens in its first 77-token chunk, tokenized by ComfyUI's CLIP (SD1.5: "l")."""
    from .text_attention import prompt_token_positions

    tokens = clip.tokenize(text)
    chunks = tokens.get("l") or next(iter(tokens.values()))
    return prompt_token_positions(chunks[0])
