"""STFG Guider (CA-Edit): CFG + Skin Transition Frequency Guidance + Blended Diffusion, a GUIDER for
SamplerCustomAdvanced. Core: caedit_core/comfy_guider.py (the guider), caedit_core/stfg_stepper.py (one guided
step), caedit_core/stfg.py (Eq. 7-10 and the normalised step), caedit_core/text_attention.py (maps and tokens)."""
from __future__ import annotations

import torch

from caedit_core.comfy_guider import clip_prompt_positions, stfg_guider
from caedit_core.stfg import BOUNDARY_RULES, STEP_RULES
from caedit_core.stfg_stepper import STFGStepper
from caedit_core.text_attention import TOKEN_CHOICES, token_selection

from .common import CATEGORY

MAPS = ("unet", "refnet")


class FaceEditSTFGGuider:
    DESCRIPTION = ("GUIDER for SamplerCustomAdvanced: CFG + Skin Transition Frequency Guidance + Blended Diffusion. "
                   "Works on any SD1.5 (inpainting) model, with or without CA2 (training-free mode). No copy of the "
                   "UNet is made: gradients run through the loaded weights; a guided step costs one backward pass "
                   "(time and activation memory: bench/bench_stfg.py).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "SD1.5 (inpainting) model, optionally patched by CA2 Adapter."}),
            "positive": ("CONDITIONING", {"tooltip": "The attribute text, e.g. from InpaintModelConditioning."}),
            "negative": ("CONDITIONING", {"tooltip": "Negative conditioning for CFG."}),
            "mask": ("MASK", {"tooltip": "Region to edit, 1 = edit; the boundary region is found inside it."}),
            "cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 30.0, "step": 0.1, "tooltip": "Classifier-free guidance scale (the paper uses 7.5)."}),
            "strength": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 1000.0, "step": 0.1, "tooltip":
                "STFG lambda. normalised step: each guided step moves the prediction lambda / (1 + lambda) of the "
                "way to the lowest skin-transition discrepancy along the guidance direction (1 = half-way), the same "
                "on small and large masks. 0 = plain CFG (nothing patched)."}),
            "radius": ("FLOAT", {"default": 0.5, "min": 0.05, "max": 1.0, "step": 0.05, "tooltip":
                "Low-pass box as a fraction of Nyquist; 0.5 is the paper's H/4 window."}),
            "boundary_rule": (list(BOUNDARY_RULES), {"default": "masked", "tooltip":
                "masked: mean/std of the text attention over the mask (Eq. 7). full_frame: appendix Eq. 13."}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Start guiding at this fraction of the schedule."}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Stop guiding after this fraction of the schedule (each guided step costs a backward pass)."}),
            "blend": ("BOOLEAN", {"default": True, "tooltip":
                "Blended Diffusion: keep the source (noised to each step) outside the mask, when the latent has no noise mask of its own."}),
            # new inputs go last: saved workflows fill widgets by position
            "tokens": (list(TOKEN_CHOICES), {"default": "auto", "tooltip":
                "Text tokens whose attention marks the edit (Eq. 11). prompt: the prompt's own words (needs clip and "
                "prompt_text); all_but_start: every token after the start token, end and padding included; all: "
                "Eq. 11 as printed (no information); auto: prompt when clip and prompt_text are given."}),
            "maps": (list(MAPS), {"default": "unet", "tooltip":
                "Whose cross-attention maps: unet = the main UNet's; refnet = the CA-Edit reference net's (the "
                "paper's appendix), needs a MODEL from CA2 Adapter with a reference net."}),
            "step": (list(STEP_RULES), {"default": "normalised", "tooltip":
                "normalised: step sized in x0 space (mask- and model-independent). paper: Eq. 10 as printed, whose "
                "useful lambda depends on the boundary size (~ its number of latent pixels)."}),
        }, "optional": {
            "source_latent": ("LATENT", {"tooltip":
                "The unmasked source latent for the low-frequency target. Default: the sampled latent (correct with "
                "InpaintModelConditioning, NOT with VAEEncodeForInpaint, which greys the masked pixels)."}),
            "clip": ("CLIP", {"tooltip": "The checkpoint's CLIP, to find the prompt's own tokens (tokens prompt/auto)."}),
            "prompt_text": ("STRING", {"default": "", "tooltip": "The positive prompt's text, exactly as encoded (tokens prompt/auto)."}),
        }}

    OUTPUT_TOOLTIPS = ('For SamplerCustomAdvanced.',)
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = f"{CATEGORY}/ca-edit"

    def get_guider(self, model, positive, negative, mask, cfg, strength, radius, boundary_rule, tokens, maps, step,
                   start_percent, end_percent, blend, source_latent=None, clip=None, prompt_text=""):
        positions = clip_prompt_positions(clip, prompt_text) if clip is not None and prompt_text.strip() else None
        sampling = model.get_model_object("model_sampling")
        sigma_range = (sampling.percent_to_sigma(start_percent), sampling.percent_to_sigma(end_percent))
        with torch.inference_mode(False):
            stepper = STFGStepper(mask.clone().float(), strength, radius, boundary_rule, sigma_range, step=step,
                                  tokens=token_selection(tokens, positions))
            source = None if source_latent is None else source_latent["samples"].clone()
        return (stfg_guider(model, positive, negative, cfg, stepper, blend, source, maps),)


NODES = {"FaceEditSTFGGuider": (FaceEditSTFGGuider, "STFG Guider (CA-Edit: inpaint face, seamless skin)")}
