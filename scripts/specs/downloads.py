"""Where each model file of the example workflows comes from, as the frontend's missing-models dialog needs it.

The dialog offers a download only for https://huggingface.co/ or https://civitai.com/ URLs of .safetensors/.sft
files, so files without such a URL (a pickle, a model folder, a user-trained adapter) are named in the workflow's
note instead and get no entry here.
"""
from __future__ import annotations

LATO = "https://huggingface.co/Alibaba-Research-Intelligence-Computing/LaTo/resolve/main/"
QWEN_IMAGE = "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/"   # core's Qwen-Image files

# (loader node type, widget) -> the ComfyUI models/ folder that loader reads the file from
LOADER_FOLDERS = {
    ("FaceEditLaToModelLoader", "dit_name"): "diffusion_models",
    ("FaceEditLaToModelLoader", "landmark_adapter"): "lato",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("FaceEditLaToTokenizerLoader", "tokenizer_name"): "lato",
    ("FaceEditLaToTextEncoderLoader", "folder"): "text_encoders",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("FaceEditCA2AdapterLoader", "adapter_name"): "ca2",
}

# (folder, file name as the loader's menu lists it) -> download URL
DOWNLOAD_URLS = {
    ("diffusion_models", "lato.safetensors"): LATO + "lato/lato.safetensors",
    ("vae", "vae.safetensors"): LATO + "lato/vae.safetensors",
    ("loras", "lato.safetensors"): LATO + "lora/lato.safetensors",
    ("lato", "Po_VQVAE/model.safetensors"): LATO + "Po_VQVAE/model.safetensors",
    ("text_encoders", "qwen_2.5_vl_7b_fp8_scaled.safetensors"):
        QWEN_IMAGE + "split_files/text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors",
    # A community safetensors conversion of RunwayML's sd-v1-5-inpainting.ckpt (the official repository,
    # stable-diffusion-v1-5/stable-diffusion-inpainting, has the .ckpt only, which the dialog refuses).
    ("checkpoints", "sd-v1-5-inpainting.safetensors"):
        "https://huggingface.co/webui/stable-diffusion-inpainting/resolve/main/sd-v1-5-inpainting.safetensors",
}


def model_files(node: dict) -> list[dict]:
    """{"name", "url", "directory"} for each downloadable file a spec node's widgets name."""
    found = []
    for widget, value in node.get("widgets", {}).items():
        folder = LOADER_FOLDERS.get((node["type"], widget))
        url = DOWNLOAD_URLS.get((folder, value))
        if url:
            found.append({"name": value, "url": url, "directory": folder})
    return found


def with_downloads(nodes: list[dict]) -> list[dict]:
    """Spec nodes with a "models" entry on each node that loads a downloadable file."""
    return [{**n, "models": model_files(n)} if model_files(n) else n for n in nodes]
