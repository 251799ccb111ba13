"""LaTo Edit Conditioning: the source crop's latent and the target landmark tokens on both CFG branches, as the
release runs them (in the spirit of core's ReferenceLatent, which carries one reference on one conditioning)."""
from lato_core.errors import FaceEditError

from .common import CATEGORY
from .lato_landmark_tokens import LATO_LANDMARK_TOKENS


def _with(conditioning, values: dict):
    return [[cond, {**options, **values}] for cond, options in conditioning]


class FaceEditLaToEditConditioning:
    DESCRIPTION = ("Puts the source crop (reference latent) and the target landmark tokens on the positive and "
                   "the negative conditioning, so any core sampler's cfg is the release's guidance (both branches "
                   "carry the image and the landmarks).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "positive": ("CONDITIONING", {"tooltip": "From LaTo Text Encode."}),
            "negative": ("CONDITIONING", {"tooltip": "From LaTo Text Encode (the empty prompt)."}),
            "source_latent": ("LATENT", {"tooltip": "The crops through core VAE Encode with LaTo's FLUX VAE."}),
            "release_height_only_scaling": ("BOOLEAN", {"default": False, "tooltip":
                "Reproduce the release's landmark RoPE scaling (height on both axes, as on its stretched 512 "
                "canvas). Off = per-axis scaling; the two agree on square crops."}),
        }, "optional": {
            "landmark_tokens": (LATO_LANDMARK_TOKENS, {"tooltip": "Target landmarks as tokens; without them LaTo "
                                                                  "edits from the instruction alone."}),
        }}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    OUTPUT_TOOLTIPS = ("Positive with the source latent and landmarks.", "Negative with the same.")
    FUNCTION = "apply"
    CATEGORY = f"{CATEGORY}/lato"

    def apply(self, positive, negative, source_latent, release_height_only_scaling, landmark_tokens=None):
        from .lato_native_model import LANDMARK_KEY, landmark_cond

        samples = source_latent["samples"]
        if samples.ndim != 4 or samples.shape[1] != 16:
            raise FaceEditError(f"LaTo needs a FLUX latent (B, 16, h, w) from VAE Encode with LaTo's vae.safetensors, "
                                f"got {tuple(samples.shape)}.")
        values = {"reference_latents": [samples]}
        if landmark_tokens is not None:
            values[LANDMARK_KEY] = landmark_cond(landmark_tokens, release_height_only_scaling)
        return _with(positive, values), _with(negative, values)


NODES = {"FaceEditLaToEditConditioning": (FaceEditLaToEditConditioning, "LaTo Edit Conditioning (expression, pose)")}
