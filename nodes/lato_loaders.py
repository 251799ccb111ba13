import os

from lato_core.engine.model import OFFLOADS, load_lato_model
from lato_core.engine.text_encoder import load_text_encoder
from lato_core.errors import FaceEditError
from lato_core.tokenizer.loading import load_tokenizer

from .common import CATEGORY, PACK_MODEL_FOLDER, model_subfolders, pack_model_paths, resolve_subfolder

LATO_MODEL = "LATO_MODEL"
LATO_TOKENIZER = "LATO_TOKENIZER"
LATO_TEXT_ENCODER = "LATO_TEXT_ENCODER"
INSIDE_CHECKPOINT = "(inside the checkpoint)"
NO_TEXT_ENCODER_HINT = "(put the Qwen2.5-VL-7B-Instruct folder in models/text_encoders/)"
STORAGE_CHOICES = ("auto", "bf16", "fp8_e4m3", "fp32")


def _pack_files(extensions: tuple[str, ...]) -> list[str]:
    """Files in models/lato/ with these endings, leaving out the shards inside model folders (the VLM's)."""
    import folder_paths

    pack_model_paths()
    model_dirs = tuple(d.replace(os.sep, "/") + "/" for d in model_subfolders(PACK_MODEL_FOLDER, "") if d)
    return [f for f in folder_paths.get_filename_list(PACK_MODEL_FOLDER)
            if f.endswith(extensions) and not f.replace(os.sep, "/").startswith(model_dirs)]


def _full_path(folder: str, name: str, what: str) -> str:
    import folder_paths

    path = folder_paths.get_full_path(folder, name)
    if path is None:
        raise FaceEditError(f"{what} '{name}' was not found: put it in models/{folder}/ (searched "
                            f"{', '.join(folder_paths.get_folder_paths(folder))}).")
    return path


def _devices():
    import comfy.model_management as mm

    return mm.get_torch_device(), mm.unet_offload_device()


class LaToModelLoader:
    """Load the LaTo DiT (lato.safetensors: Step1X-Edit DiT + Qwen connector, maybe landmark_in)."""

    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        return {"required": {
            "dit_name": (folder_paths.get_filename_list("diffusion_models"), {"tooltip":
                "lato/lato.safetensors from the LaTo release, in models/diffusion_models/. A plain FLUX file is refused."}),
            "landmark_adapter": ([INSIDE_CHECKPOINT] + _pack_files((".pth", ".safetensors")), {"tooltip":
                "landmark_in.pth from the LaTo code release (in models/lato/) when the checkpoint lacks landmark_in.*; "
                "read with weights_only=True."}),
            "weight_dtype": (list(STORAGE_CHOICES), {"default": "auto", "tooltip":
                "auto: bf16 on a GPU, fp32 on the CPU. fp8_e4m3 halves the block weights (upcast per layer)."}),
            "offload": (list(OFFLOADS), {"default": "none", "tooltip":
                "blocks: keep the transformer blocks in RAM and move each to the GPU only for its turn (slower, "
                "for small GPUs)."}),
        }}

    RETURN_TYPES = (LATO_MODEL,)
    RETURN_NAMES = ("lato_model",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/lato"

    def load(self, dit_name, landmark_adapter, weight_dtype, offload):
        import torch

        device, offload_device = _devices()
        storage = weight_dtype if weight_dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")
        adapter = None if landmark_adapter == INSIDE_CHECKPOINT else _full_path(PACK_MODEL_FOLDER, landmark_adapter, "Landmark adapter")
        compute = torch.bfloat16 if storage != "fp32" else torch.float32
        return (load_lato_model(_full_path("diffusion_models", dit_name, "LaTo checkpoint"), adapter, storage,
                                offload, compute_dtype=compute, device=offload_device),)


class LaToLoRA:
    """Apply the released LaTo LoRA (kohya lora_unet_* keys) to a clone of the model, with a strength."""

    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        return {"required": {
            "lato_model": (LATO_MODEL, {"tooltip": "From the LaTo model loader."}),
            "lora_name": (folder_paths.get_filename_list("loras"), {"tooltip": "lora/lato.safetensors from the LaTo release, in models/loras/."}),
            "strength": ("FLOAT", {"default": 1.0, "min": -4.0, "max": 4.0, "step": 0.05, "tooltip":
                "Scale of the LoRA (the release uses 1.0). Applied only while sampling; the loaded model is unchanged."}),
        }}

    RETURN_TYPES = (LATO_MODEL,)
    RETURN_NAMES = ("lato_model",)
    FUNCTION = "apply"
    CATEGORY = f"{CATEGORY}/lato"

    def apply(self, lato_model, lora_name, strength):
        return (lato_model.with_lora(_full_path("loras", lora_name, "LoRA"), strength),)


class LaToTokenizerLoader:
    """Load the landmark tokenizer (Po_VQVAE/model.safetensors) from models/lato/."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tokenizer_name": (_pack_files((".safetensors",)), {"tooltip":
            "Po_VQVAE/model.safetensors from the LaTo release (or one trained with this pack), in models/lato/."})}}

    RETURN_TYPES = (LATO_TOKENIZER,)
    RETURN_NAMES = ("tokenizer",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/lato"

    def load(self, tokenizer_name):
        return (load_tokenizer(_full_path(PACK_MODEL_FOLDER, tokenizer_name, "Landmark tokenizer"), decoder=False),)


class LaToTextEncoderLoader:
    """Load the Qwen2.5-VL-7B-Instruct folder that encodes LaTo's instructions."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"folder": (model_subfolders("text_encoders", NO_TEXT_ENCODER_HINT), {"tooltip":
            "A stock Qwen2.5-VL-7B-Instruct folder (config.json, tokenizer, *.safetensors) under models/text_encoders/."})}}

    RETURN_TYPES = (LATO_TEXT_ENCODER,)
    RETURN_NAMES = ("text_encoder",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/lato"

    def load(self, folder):
        _, offload_device = _devices()
        path = resolve_subfolder("text_encoders", folder)
        if not os.path.isdir(path):
            raise FaceEditError(f"Text encoder folder not found: {path}. Put the Qwen2.5-VL-7B-Instruct folder in "
                                "models/text_encoders/.")
        return (load_text_encoder(path, device=str(offload_device)),)


NODES = {
    "LaToModelLoader": (LaToModelLoader, "LaTo Model Loader"),
    "LaToLoRA": (LaToLoRA, "LaTo LoRA"),
    "LaToTokenizerLoader": (LaToTokenizerLoader, "LaTo Landmark Tokenizer Loader"),
    "LaToTextEncoderLoader": (LaToTextEncoderLoader, "LaTo Text Encoder Loader (Qwen2.5-VL)"),
}
