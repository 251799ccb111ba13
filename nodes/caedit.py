"""CA-Edit in ComfyUI: CA2 adapter (+ reference net) on a MODEL clone, the STFG guider, the feathered paste.

Everything patches a clone(): attn2 replace patches, one DIFFUSION_MODEL wrapper and one output_block_patch
(CA2Adapter), attn2 replace patches that record text attention (STFGGuider). The math lives in caedit_core.
"""
from __future__ import annotations

import logging
import os

import torch

from caedit_core.blend import paste_pixels
from caedit_core.checkpoint import load_adapter
from caedit_core.comfy_patches import Attn2Patch, CAEditUNetWrapper, STFGStepper, refnet_output_block_patch
from caedit_core.face_parsing import ALIASES, SEGFORMER_LABELS, load_segformer, mask_from_labels, segformer_label_map
from caedit_core.refnet import comfy_attn2_key, grey_masked_pixels, masked_condition
from caedit_core.stfg import BOUNDARY_RULES

from lato_core.face.batch import mask_preview

from .common import CATEGORY, preview

ADAPTER = "CAEDIT_ADAPTER"
FOLDER, PARSERS = "ca2", "face_parsing"
WRAPPER_KEY = "caedit"
log = logging.getLogger(__name__)


def adapter_files() -> list[str]:
    """Registers models/ca2 on first use (keeping any extra_model_paths entries) and lists its files."""
    import folder_paths

    if FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[FOLDER] = ([os.path.join(folder_paths.models_dir, FOLDER)], {".safetensors"})
    return folder_paths.get_filename_list(FOLDER)


def attn2_keys(model_patcher) -> list[tuple[str, int, int]]:
    """ComfyUI patch keys of every cross-attention block of an SD-style UNet."""
    unet = model_patcher.get_model_object("diffusion_model")
    keys = []
    for kind, blocks in (("input", unet.input_blocks), ("middle", [unet.middle_block]), ("output", unet.output_blocks)):
        for index, block in enumerate(blocks):
            for module in block.modules():
                if hasattr(module, "transformer_blocks"):
                    keys += [(kind, index, t) for t in range(len(module.transformer_blocks))]
    return keys


def _replace_patches(model_patcher) -> dict:
    return model_patcher.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})


class CA2AdapterLoader:
    """Load a CA-Edit adapter (CA2 layers, optional reference net) trained with `python -m caedit_core train`."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "adapter_name": (adapter_files(), {"tooltip": "A .safetensors file in models/ca2 written by the CA-Edit trainer."}),
            "dtype": (["auto", "float32", "float16", "bfloat16"], {"default": "auto", "tooltip":
                "Weight precision. auto: float16 on a GPU, float32 on the CPU."}),
        }}

    RETURN_TYPES = (ADAPTER,)
    RETURN_NAMES = ("ca2_adapter",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, adapter_name, dtype):
        import comfy.model_management as mm
        import folder_paths

        path = folder_paths.get_full_path_or_raise(FOLDER, adapter_name)
        if dtype == "auto":
            dtype = "float16" if mm.get_torch_device().type == "cuda" else "float32"
        with torch.inference_mode(False):  # normal tensors: STFG differentiates through them
            adapter = load_adapter(path, getattr(torch, dtype))
        return (adapter,)


class CA2Adapter:
    """Patch a clone of an SD1.5 MODEL with CA2 (score-suppressed visual cross-attention on the source photo) and,
    when the adapter has one, the reference net."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "An SD1.5 (inpainting) model; a patched clone is returned."}),
            "ca2_adapter": (ADAPTER, {"tooltip": "From CA2 Adapter Loader."}),
            "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip":
                "CLIP Vision Encode of the source photo (crop 'center' or 'none'), with the CLIP vision model the adapter was trained with."}),
            "mask": ("MASK", {"tooltip": "Region to edit, 1 = edit. Visual attention is suppressed there by the predicted score."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05, "tooltip":
                "Weight of the visual (source photo) term; 0 = plain text cross-attention."}),
            "refnet_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05, "tooltip":
                "Scale of the reference-net residuals (ignored when the adapter has no reference net)."}),
        }, "optional": {
            "image": ("IMAGE", {"tooltip": "The source photo (same size as the mask); needed when the adapter has a reference net."}),
            "vae": ("VAE", {"tooltip": "The checkpoint's VAE, to encode the masked source for the reference net."}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    CATEGORY = CATEGORY

    def apply(self, model, ca2_adapter, clip_vision_output, mask, strength, refnet_strength, image=None, vae=None):
        import comfy.patcher_extension as pe

        cfg = ca2_adapter.config
        tokens = clip_vision_output["penultimate_hidden_states" if cfg["clip_tokens"] == "penultimate" else "last_hidden_state"]
        if tokens.shape[-1] != cfg["clip_dim"]:
            raise ValueError(f"The CA2 adapter expects {cfg['clip_dim']}-wide CLIP image tokens, this CLIP vision "
                             f"model gives {tokens.shape[-1]}: load the CLIP vision model it was trained with.")
        work = model.clone()
        known = set(attn2_keys(work))
        condition = None
        if ca2_adapter.refnet is not None and refnet_strength != 0:
            if image is None or vae is None:
                raise ValueError("This CA2 adapter has a reference net: connect the source image and the VAE.")
            latent = vae.encode(grey_masked_pixels(image[..., :3], mask))
            latent = work.get_model_object("latent_format").process_in(latent)
            with torch.inference_mode(False):
                condition = masked_condition(latent.clone(), mask.clone())
            work.set_model_output_block_patch(refnet_output_block_patch)
        in_refnet = cfg["placement"] == "refnet"
        if not in_refnet:
            for name, layer in ca2_adapter.layers().items():
                key = comfy_attn2_key(name, cfg["layers_per_block"])
                if key not in known:
                    raise ValueError(f"CA2 layer {name} has no cross-attention block {key} in this model: the adapter "
                                     "was trained for another UNet layout (SD1.5 expected).")
                work.set_model_attn2_replace(Attn2Patch(layer), *key)
        with torch.inference_mode(False):
            wrapper = CAEditUNetWrapper(tokens.clone(), mask.clone(), strength, True, ca2_adapter.refnet, condition,
                                        refnet_strength, cfg["uncond_image"] == "zeros", in_refnet)
        wrapper_device = _DevicePlacer(ca2_adapter, wrapper)
        work.remove_wrappers_with_key(pe.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY)
        work.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, wrapper_device)
        return (work,)


class _DevicePlacer:
    """Moves the adapter to the UNet's device on first use, outside inference mode (STFG needs normal tensors)."""

    def __init__(self, adapter, wrapper):
        self.adapter, self.wrapper = adapter, wrapper

    def __call__(self, executor, x, *args, **kwargs):
        if next(self.adapter.parameters()).device != x.device:
            with torch.inference_mode(False), torch.no_grad():
                self.adapter.to(x.device)
        return self.wrapper(executor, x, *args, **kwargs)


def _make_guider_class():
    import comfy.samplers

    class STFGCFGGuider(comfy.samplers.CFGGuider):
        """CFG guider + STFG (Eq. 7-10) on the boundary region + Blended Diffusion via ComfyUI's denoise mask."""

        def setup(self, stepper: STFGStepper, blend: bool, source_latent):
            self.stepper, self.blend, self.source_override = stepper, blend, source_latent
            patches, recorded = _replace_patches(self.model_patcher), 0
            for key in attn2_keys(self.model_patcher):
                old = patches.get(key)
                if old is None or isinstance(old, Attn2Patch):
                    new = old.with_recorder(stepper.recorder) if old is not None else Attn2Patch(None, stepper.recorder)
                    self.model_patcher.set_model_attn2_replace(new, *key)
                    recorded += 1
            if not recorded:
                log.warning("STFG: every cross-attention layer carries another pack's patch; no boundary region.")
            self.model_options = self.model_patcher.model_options

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
            def predict(z, t):
                return comfy.samplers.sampling_function(self.inner_model, z, t, self.conds.get("negative"),
                                                        self.conds.get("positive"), self.cfg, model_options, seed)
            out = self.stepper(x, timestep, predict, self.inner_model)
            if self.stepper.last_loss is not None:
                log.debug("STFG sigma %.3f: %d boundary px, g = %.5f", float(timestep.reshape(-1)[0]),
                          int(self.stepper.last_boundary.sum()), float(self.stepper.last_loss))
            return out

    return STFGCFGGuider


class STFGGuider:
    """GUIDER for SamplerCustomAdvanced: CFG + Skin Transition Frequency Guidance + Blended Diffusion. Works on any
    SD1.5 (inpainting) model, with or without CA2 (training-free mode)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "SD1.5 (inpainting) model, optionally patched by CA2 Adapter."}),
            "positive": ("CONDITIONING", {"tooltip": "The attribute text, e.g. from InpaintModelConditioning."}),
            "negative": ("CONDITIONING", {"tooltip": "Negative conditioning for CFG."}),
            "mask": ("MASK", {"tooltip": "Region to edit, 1 = edit; the boundary region is found inside it."}),
            "cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 30.0, "step": 0.1, "tooltip": "Classifier-free guidance scale (the paper uses 7.5)."}),
            "strength": ("FLOAT", {"default": 30.0, "min": 0.0, "max": 10000.0, "step": 1.0, "tooltip":
                "STFG lambda. The loss is a mean over boundary latent pixels, so useful values are of the order of "
                "the boundary size in latent pixels. 0 = plain CFG sampling."}),
            "radius": ("FLOAT", {"default": 0.5, "min": 0.05, "max": 1.0, "step": 0.05, "tooltip":
                "Low-pass box as a fraction of Nyquist; 0.5 is the paper's H/4 window."}),
            "boundary_rule": (list(BOUNDARY_RULES), {"default": "masked", "tooltip":
                "masked: mean/std of the text attention over the mask (Eq. 7). full_frame: appendix Eq. 13."}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Start guiding at this fraction of the schedule."}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Stop guiding after this fraction of the schedule (each guided step costs a backward pass)."}),
            "blend": ("BOOLEAN", {"default": True, "tooltip":
                "Blended Diffusion: keep the source (noised to each step) outside the mask, when the latent has no noise mask of its own."}),
        }, "optional": {
            "source_latent": ("LATENT", {"tooltip":
                "The unmasked source latent for the low-frequency target. Default: the sampled latent (correct with "
                "InpaintModelConditioning, NOT with VAEEncodeForInpaint, which greys the masked pixels)."}),
        }}

    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = CATEGORY

    def get_guider(self, model, positive, negative, mask, cfg, strength, radius, boundary_rule, start_percent,
                   end_percent, blend, source_latent=None):
        sampling = model.get_model_object("model_sampling")
        guider = _make_guider_class()(model.clone())
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        sigma_range = (sampling.percent_to_sigma(start_percent), sampling.percent_to_sigma(end_percent))
        with torch.inference_mode(False):
            stepper = STFGStepper(mask.clone().float(), strength, radius, boundary_rule, sigma_range)
            source = None if source_latent is None else source_latent["samples"].clone()
        guider.setup(stepper, blend, source)
        return (guider,)


class CAEditPaste:
    """Final paste of the decoded edit into the source, feathered inward: pixels outside the mask stay the source's."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "edited": ("IMAGE", {"tooltip": "The decoded inpainting result."}),
            "source": ("IMAGE", {"tooltip": "The photo (or crop) that was edited, same size."}),
            "mask": ("MASK", {"tooltip": "Region that was edited, 1 = edit."}),
            "feather": ("INT", {"default": 8, "min": 0, "max": 256, "tooltip": "Inward ramp width in pixels; 0 = hard edge."}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "paste"
    CATEGORY = CATEGORY

    def paste(self, edited, source, mask, feather):
        if edited.shape[1:3] != source.shape[1:3]:
            raise ValueError(f"edited is {tuple(edited.shape[1:3])}, source {tuple(source.shape[1:3])}: sizes must match")
        return (paste_pixels(edited[..., :3], source[..., :3], mask, feather),)


class FaceParsingMask:
    """MASK of face-parsing classes chosen by name, from a SegFormer face-parsing folder in models/face_parsing."""
    _cache: dict = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Photo(s) or face crop(s) to parse."}),
            "parser": (parser_folders(), {"tooltip": "A SegFormer face-parsing folder (config.json with id2label) in models/face_parsing."}),
            "regions": ("STRING", {"default": "brows", "tooltip":
                "Comma-separated classes by name (never index): " + ", ".join(SEGFORMER_LABELS) + "; groups: " + ", ".join(ALIASES) + "."}),
            "grow": ("INT", {"default": 0, "min": 0, "max": 128, "tooltip": "Dilate the mask by this many pixels (the paper's coarse masks)."}),
        }}

    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    FUNCTION = "mask"
    CATEGORY = CATEGORY

    def mask(self, image, parser, regions, grow):
        import comfy.model_management as mm
        import folder_paths

        path = next(os.path.join(root, parser) for root in folder_paths.get_folder_paths(PARSERS)
                    if os.path.isdir(os.path.join(root, parser)))
        if path not in self._cache:
            self._cache.clear()
            self._cache[path] = load_segformer(path, mm.get_torch_device())
        model, processor, order = self._cache[path]
        masks = mask_from_labels(segformer_label_map(model, processor, image), regions, order)
        if grow:
            masks = torch.nn.functional.max_pool2d(masks[:, None], 2 * grow + 1, stride=1, padding=grow)[:, 0]
        return {"ui": preview(mask_preview(masks, image), "face_parsing"), "result": (masks,)}


def parser_folders() -> list[str]:
    import folder_paths

    if PARSERS not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[PARSERS] = ([os.path.join(folder_paths.models_dir, PARSERS)], set())
    return sorted({d for root in folder_paths.get_folder_paths(PARSERS) if os.path.isdir(root)
                   for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "config.json"))})


# node id -> (class, display name); nodes/__init__.py collects these
NODES = {
    "CA2AdapterLoader": (CA2AdapterLoader, "CA2 Adapter Loader (CA-Edit)"),
    "CA2Adapter": (CA2Adapter, "CA2 Adapter (CA-Edit)"),
    "STFGGuider": (STFGGuider, "STFG Guider (CA-Edit)"),
    "CAEditPaste": (CAEditPaste, "CA-Edit Paste (feathered)"),
    "FaceEditParsingMask": (FaceParsingMask, "Face Parsing Mask (by class name)"),
}
