from lato_core.engine.run import GUIDANCE_MODES, edit_latent, tokenize_landmarks
from lato_core.engine.text_encoder import encode_edit

from .common import CATEGORY, LANDMARKS
from .lato_loaders import LATO_MODEL, LATO_TEXT_ENCODER, LATO_TOKENIZER

LATO_LANDMARK_TOKENS = "LATO_LANDMARK_TOKENS"
LATO_CONDITIONING = "LATO_CONDITIONING"


class LandmarkTokenizer:
    """Quantize target landmarks into LaTo's landmark tokens (one token per point)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "tokenizer": (LATO_TOKENIZER, {"tooltip": "From the LaTo landmark tokenizer loader."}),
            "landmarks": (LANDMARKS, {"tooltip": "Target landmarks on the face crop (e.g. from the Landmark Predictor). "
                                                 "Hidden points (visibility 0) are left out of the DiT's sequence."}),
        }}

    RETURN_TYPES = (LATO_LANDMARK_TOKENS,)
    RETURN_NAMES = ("landmark_tokens",)
    FUNCTION = "tokenize"
    CATEGORY = f"{CATEGORY}/lato"

    def tokenize(self, tokenizer, landmarks):
        return (tokenize_landmarks(tokenizer, landmarks),)


class LaToTextEncode:
    """Encode the instruction with the source crop through Qwen2.5-VL and LaTo's connector (cached)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text_encoder": (LATO_TEXT_ENCODER, {"tooltip": "From the LaTo text encoder loader."}),
            "lato_model": (LATO_MODEL, {"tooltip": "The LaTo model; its connector turns Qwen's states into tokens."}),
            "crops": ("IMAGE", {"tooltip": "The source face crops (Face Crop), one encoding per crop."}),
            "instruction": ("STRING", {"multiline": True, "default": "turn her head 30 degrees left and smile slightly",
                                       "tooltip": "The edit, in words; the geometry comes from the landmark tokens."}),
            "free_after": ("BOOLEAN", {"default": True, "tooltip":
                "Move the 7B text encoder off the GPU after encoding. Encodings are cached, so a new seed or "
                "guidance scale does not run it again."}),
        }}

    RETURN_TYPES = (LATO_CONDITIONING,)
    RETURN_NAMES = ("conditioning",)
    FUNCTION = "encode"
    CATEGORY = f"{CATEGORY}/lato"

    def encode(self, text_encoder, lato_model, crops, instruction, free_after):
        import comfy.model_management as mm

        return (encode_edit(text_encoder, lato_model, instruction, crops, mm.text_encoder_device(), free_after,
                            mm.text_encoder_offload_device()),)


class LaToSampler:
    """Edit the source crops with LaTo: flow-matching Euler with the release's schedule and guidance."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "lato_model": (LATO_MODEL, {"tooltip": "From the LaTo model loader (optionally through LaTo LoRA)."}),
            "conditioning": (LATO_CONDITIONING, {"tooltip": "From LaTo Text Encode."}),
            "source_latent": ("LATENT", {"tooltip": "The crops encoded by the core VAE Encode with LaTo's FLUX VAE."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip": "Noise seed (drawn on the CPU: same on every device)."}),
            "steps": ("INT", {"default": 28, "min": 1, "max": 200, "tooltip": "Euler steps; the release uses 28."}),
            "guidance_mode": (list(GUIDANCE_MODES), {"default": "release", "tooltip":
                "release: text CFG, both branches carry the landmarks (batched). landmark_aware: the paper's CFG with "
                "a separate geometry scale (a third branch without landmarks). none: one conditional pass."}),
            "guidance_scale": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 20.0, "step": 0.1, "tooltip": "Text guidance scale (release 4.0)."}),
            "geometry_scale": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 20.0, "step": 0.1, "tooltip":
                "landmark_aware only: how strongly the landmarks are followed; 1 = like the release."}),
            "shift": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 10.0, "step": 0.05, "tooltip":
                "Schedule shift mu; 0 = the release's rule (linear in the token count)."}),
            "release_height_only_scaling": ("BOOLEAN", {"default": False, "tooltip":
                "Reproduce the release's landmark RoPE scaling (height on both axes). Off = correct per-axis "
                "scaling; the two agree on square crops."}),
        }, "optional": {
            "landmark_tokens": (LATO_LANDMARK_TOKENS, {"tooltip": "Target landmarks as tokens; without them LaTo "
                                                                  "edits from the instruction alone."}),
        }}

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "sample"
    CATEGORY = f"{CATEGORY}/lato"

    def sample(self, lato_model, conditioning, source_latent, seed, steps, guidance_mode, guidance_scale,
               geometry_scale, shift, release_height_only_scaling, landmark_tokens=None):
        import comfy.model_management as mm
        import comfy.utils

        progress = comfy.utils.ProgressBar(steps)
        cond, uncond = conditioning
        device = mm.get_torch_device()
        if device.type == "cuda":  # a 12B DiT wants the GPU to itself: let ComfyUI unload its models first
            mm.unload_all_models()
            mm.soft_empty_cache()
        latent = edit_latent(lato_model, cond, uncond, landmark_tokens, source_latent["samples"], seed, steps,
                             guidance_mode, guidance_scale, geometry_scale, shift or None, release_height_only_scaling,
                             device=device, offload_device=mm.unet_offload_device(),
                             callback=lambda step, total, _: progress.update_absolute(step + 1, total),
                             interrupt=mm.throw_exception_if_processing_interrupted)
        mm.soft_empty_cache()
        return ({"samples": latent},)


NODES = {
    "LandmarkTokenizer": (LandmarkTokenizer, "LaTo Landmark Tokens"),
    "LaToTextEncode": (LaToTextEncode, "LaTo Text Encode"),
    "LaToSampler": (LaToSampler, "LaTo Sampler"),
}
