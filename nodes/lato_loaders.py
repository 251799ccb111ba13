import os

from lato_core.engine.text_encoder import load_text_encoder
from lato_core.errors import FaceEditError
from lato_core.tokenizer.loading import load_tokenizer

from .common import CATEGORY, PACK_MODEL_FOLDER, model_subfolders, or_hint, pack_model_paths, resolve_subfolder

LATO_TOKENIZER = "LATO_TOKENIZER"
LATO_TEXT_ENCODER = "LATO_TEXT_ENCODER"
INSIDE_CHECKPOINT = "(inside the checkpoint)"
NO_TEXT_ENCODER_HINT = "(put the Qwen2.5-VL-7B-Instruct folder in models/text_encoders/)"


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


def _weight_dtypes():
    from .lato_native_model import WEIGHT_DTYPES

    return WEIGHT_DTYPES


def _devices():
    import comfy.model_management as mm

    return mm.get_torch_device(), mm.unet_offload_device()


class FaceEditLaToModelLoader:
    """The LaTo DiT as a native ComfyUI MODEL: core samplers, LoRA loaders and the memory manager work on it."""

    DESCRIPTION = ("Loads lato.safetensors (the Step1X-Edit DiT with Qwen connector and landmark adapter) as a "
                   "MODEL for core KSampler / SamplerCustomAdvanced and LoraLoaderModelOnly. The file is checked "
                   "strictly; a plain FLUX file is refused.")

    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        return {"required": {
            "dit_name": (or_hint(folder_paths.get_filename_list("diffusion_models"),
                                  "(put lato.safetensors in models/diffusion_models/)"), {"tooltip":
                "lato/lato.safetensors from the LaTo release (or its fp8 repack), in models/diffusion_models/."}),
            "landmark_adapter": ([INSIDE_CHECKPOINT] + _pack_files((".pth", ".safetensors")), {"tooltip":
                "landmark_in.pth from the LaTo code release, or its safetensors repack (in models/lato/), when the "
                "checkpoint lacks landmark_in.*; a .pth is read with weights_only=True."}),
            "weight_dtype": (list(_weight_dtypes()), {"default": "default", "tooltip":
                "default: the dtype ComfyUI picks for this device. fp8 halves the weights' memory (cast per layer "
                "while sampling), as core's diffusion-model loader offers."}),
        }}

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The LaTo DiT; apply the released LoRA with core's LoraLoaderModelOnly.",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/lato"

    def load(self, dit_name, landmark_adapter, weight_dtype):
        from .lato_native_model import load_lato_patcher

        adapter = None if landmark_adapter == INSIDE_CHECKPOINT else _full_path(PACK_MODEL_FOLDER, landmark_adapter, "Landmark adapter")
        return (load_lato_patcher(_full_path("diffusion_models", dit_name, "LaTo checkpoint"), adapter, weight_dtype),)


class FaceEditLaToTokenizerLoader:
    """Load the landmark tokenizer (Po_VQVAE/model.safetensors) from models/lato/."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tokenizer_name": (or_hint(_pack_files((".safetensors",)),
                                                         "(put Po_VQVAE/model.safetensors in models/lato/)"), {"tooltip":
            "Po_VQVAE/model.safetensors from the LaTo release (or one trained with this pack), in models/lato/."})}}

    DESCRIPTION = ("Loads LaTo's landmark tokenizer (a VQ-VAE over the 68-point sequence): Po_VQVAE/model.safetensors "
                   "of the release, its one-file repack, or one trained with python -m lato_core.tokenizer_training.")
    OUTPUT_TOOLTIPS = ("For LaTo Landmark Tokens.",)
    RETURN_TYPES = (LATO_TOKENIZER,)
    RETURN_NAMES = ("tokenizer",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/lato"

    def load(self, tokenizer_name):
        return (load_tokenizer(_full_path(PACK_MODEL_FOLDER, tokenizer_name, "Landmark tokenizer"), decoder=False),)


class FaceEditLaToTextEncoderLoader:
    """Load the Qwen2.5-VL-7B-Instruct folder that encodes LaTo's instructions."""

    DESCRIPTION = ("Loads a stock Qwen2.5-VL-7B-Instruct folder (transformers) as LaTo's text encoder. Users of "
                   "Qwen-Image can use core's CLIPLoader (type qwen_image) instead and skip this download.")
    OUTPUT_TOOLTIPS = ("For LaTo Text Encode.",)

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
    "FaceEditLaToModelLoader": (FaceEditLaToModelLoader, "LaTo Model Loader"),
    "FaceEditLaToTokenizerLoader": (FaceEditLaToTokenizerLoader, "LaTo Landmark Tokenizer Loader"),
    "FaceEditLaToTextEncoderLoader": (FaceEditLaToTextEncoderLoader, "LaTo Text Encoder Loader (Qwen2.5-VL)"),
}
