"""CA2 Adapter Loader and CA2 Adapter (CA-Edit): the adapter file, then CA2 (+ reference net) on a MODEL clone.
Core: caedit_core/checkpoint.py (file, CLIP width check), caedit_core/comfy_patches.py:apply_ca2 (patches),
caedit_core/ca2.py (the attention) and caedit_core/refnet.py."""
from __future__ import annotations

import os

import torch

from caedit_core.checkpoint import image_tokens, load_adapter
from caedit_core.comfy_patches import apply_ca2

from .common import CATEGORY, or_hint

ADAPTER = "CAEDIT_ADAPTER"
FOLDER = "ca2"
CLIP_VISION_HINT = "ViT-L/14 (1024-wide), the model the adapter was trained with unless its file says otherwise"


def adapter_files() -> list[str]:
    """Registers models/ca2 on first use (keeping any extra_model_paths entries) and lists its files."""
    import folder_paths

    if FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[FOLDER] = ([os.path.join(folder_paths.models_dir, FOLDER)], {".safetensors"})
    return folder_paths.get_filename_list(FOLDER)


class FaceEditCA2AdapterLoader:
    DESCRIPTION = "Load a CA-Edit adapter (CA2 layers, optional reference net) trained with `python -m caedit_core train`."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "adapter_name": (or_hint(adapter_files(), "(put a CA-Edit adapter .safetensors in models/ca2/)"), {"tooltip": "A .safetensors file in models/ca2 written by the CA-Edit trainer."}),
            "dtype": (["auto", "float32", "float16", "bfloat16"], {"default": "auto", "tooltip":
                "Weight precision. auto: float16 on a GPU, float32 on the CPU."}),
        }}

    OUTPUT_TOOLTIPS = ('For the CA2 Adapter node.',)
    RETURN_TYPES = (ADAPTER,)
    RETURN_NAMES = ("ca2_adapter",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/ca-edit"

    def load(self, adapter_name, dtype):
        import comfy.model_management as mm
        import folder_paths

        path = folder_paths.get_full_path_or_raise(FOLDER, adapter_name)
        if dtype == "auto":
            dtype = "float16" if mm.get_torch_device().type == "cuda" else "float32"
        with torch.inference_mode(False):  # normal tensors: STFG differentiates through them
            return (load_adapter(path, getattr(torch, dtype)),)


class FaceEditCA2Adapter:
    DESCRIPTION = ("Patch a clone of an SD1.5 MODEL with CA2 (score-suppressed visual cross-attention on the source "
                   "photo, added to the layer's attention and to any other pack's patch) and, when the adapter has "
                   "one, the reference net.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "An SD1.5 (inpainting) model; a patched clone is returned."}),
            "ca2_adapter": (ADAPTER, {"tooltip": "From CA2 Adapter Loader."}),
            "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip":
                f"CLIP Vision Encode of the source photo (crop 'center' or 'none'), with {CLIP_VISION_HINT}; "
                "another width is refused."}),
            "mask": ("MASK", {"tooltip": "Region to edit, 1 = edit. Visual attention is suppressed there by the predicted score."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05, "tooltip":
                "Weight of the visual (source photo) term; 0 = no CA2 patch at all."}),
            "refnet_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05, "tooltip":
                "Scale of the reference-net residuals (ignored when the adapter has no reference net)."}),
        }, "optional": {
            "image": ("IMAGE", {"tooltip": "The source photo (same size as the mask); needed when the adapter has a reference net."}),
            "vae": ("VAE", {"tooltip": "The checkpoint's VAE, to encode the masked source for the reference net."}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    CATEGORY = f"{CATEGORY}/ca-edit"

    def apply(self, model, ca2_adapter, clip_vision_output, mask, strength, refnet_strength, image=None, vae=None):
        tokens = image_tokens(ca2_adapter.config, clip_vision_output)
        return (apply_ca2(model, ca2_adapter, tokens, mask, strength, refnet_strength, image, vae),)


NODES = {
    "FaceEditCA2AdapterLoader": (FaceEditCA2AdapterLoader, "CA2 Adapter Loader (CA-Edit)"),
    "FaceEditCA2Adapter": (FaceEditCA2Adapter, "CA2 Adapter (CA-Edit: inpaint face attributes)"),
}
