"""Example workflow: portrait + instruction -> detect -> crop -> predict landmarks -> tokens -> core KSampler on the
native LaTo MODEL (LoRA through core's LoraLoaderModelOnly) -> decode -> stitch. File names are the LaTo release's
(the adapter as its safetensors repack), in the folders the README's model table gives."""
from . import Presentation
from .face import SAMPLE_IMAGE
from .predictor import INSTRUCTION

RELEASE_FILES = {
    "dit": "lato.safetensors",                        # models/diffusion_models/
    "adapter": "landmark_in.safetensors",             # models/lato/, repacked from the code release's landmark_in.pth
    "lora": "lato.safetensors",                       # models/loras/
    "tokenizer": "Po_VQVAE/model.safetensors",        # models/lato/
    "text_encoder": "qwen_2.5_vl_7b_fp8_scaled.safetensors",   # models/text_encoders/, ComfyUI's Qwen-Image file
    "vae": "vae.safetensors",                         # models/vae/
}

LATO_EDIT = [
    {"id": 1, "type": "LoadImage", "pos": [0, 0], "size": [300, 360], "widgets": {"image": SAMPLE_IMAGE}},
    {"id": 2, "type": "FaceEditDetectLandmarks", "pos": [340, 0], "size": [320, 420], "links": {"image": (1, 0)}},
    {"id": 3, "type": "FaceEditCrop", "pos": [700, 0], "size": [300, 420], "links": {"image": (1, 0), "landmarks": (2, 0)}},
    {"id": 4, "type": "FaceEditLandmarkPredictor", "pos": [1080, 0], "size": [340, 760],
     "widgets": {"instruction": INSTRUCTION}, "links": {"landmarks": (3, 1), "crops": (3, 0)}},
    {"id": 5, "type": "FaceEditLaToTokenizerLoader", "pos": [1460, 0], "size": [340, 80],
     "widgets": {"tokenizer_name": RELEASE_FILES["tokenizer"]}},
    {"id": 6, "type": "FaceEditLaToLandmarkTokens", "pos": [1460, 160], "size": [300, 80],
     "links": {"tokenizer": (5, 0), "landmarks": (4, 0)}},
    {"id": 7, "type": "FaceEditLaToModelLoader", "pos": [0, 580], "size": [340, 130],
     "widgets": {"dit_name": RELEASE_FILES["dit"], "landmark_adapter": RELEASE_FILES["adapter"]}},
    {"id": 8, "type": "LoraLoaderModelOnly", "pos": [0, 770], "size": [340, 90],
     "widgets": {"lora_name": RELEASE_FILES["lora"], "strength_model": 1.0}, "links": {"model": (7, 0)}},
    {"id": 9, "type": "CLIPLoader", "pos": [380, 580], "size": [320, 110],
     "widgets": {"clip_name": RELEASE_FILES["text_encoder"], "type": "qwen_image", "device": "default"}},
    {"id": 10, "type": "FaceEditLaToTextEncode", "pos": [1880, 0], "size": [320, 220], "widgets": {"instruction": INSTRUCTION},
     "links": {"crops": (3, 0), "clip": (9, 0)}},
    {"id": 11, "type": "VAELoader", "pos": [380, 720], "size": [320, 80], "widgets": {"vae_name": RELEASE_FILES["vae"]}},
    {"id": 12, "type": "VAEEncode", "pos": [1880, 290], "size": [240, 60], "links": {"pixels": (3, 0), "vae": (11, 0)}},
    {"id": 13, "type": "FaceEditLaToEditConditioning", "pos": [1880, 420], "size": [320, 140],
     "links": {"positive": (10, 0), "negative": (10, 1), "source_latent": (12, 0), "landmark_tokens": (6, 0)}},
    {"id": 14, "type": "KSampler", "pos": [2280, 0], "size": [320, 470],
     "widgets": {"seed": 0, "steps": 28, "cfg": 4.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0},
     "links": {"model": (8, 0), "positive": (13, 0), "negative": (13, 1), "latent_image": (12, 0)}},
    {"id": 15, "type": "VAEDecode", "pos": [2680, 0], "size": [240, 60], "links": {"samples": (14, 0), "vae": (11, 0)}},
    {"id": 16, "type": "FaceEditStitch", "pos": [2680, 130], "size": [320, 300],
     "links": {"image": (1, 0), "crops": (15, 0), "crop_info": (3, 2)}},
    {"id": 17, "type": "SaveImage", "pos": [3040, 0], "size": [360, 420], "title": "LaTo edit",
     "widgets": {"filename_prefix": "face_edit/lato"}, "links": {"images": (16, 0)}},
    {"id": 18, "type": "SaveImage", "pos": [3040, 480], "size": [320, 380], "title": "Edited crop",
     "widgets": {"filename_prefix": "face_edit/lato_crop"}, "links": {"images": (15, 0)}},
]

NOTE = """LaTo: edit a face's expression and head pose from an instruction

Detects the face, predicts target landmarks from the instruction, turns them into LaTo landmark tokens and samples
the edit with core KSampler on the LaTo DiT (with the released LoRA), then stitches the edited crop back.

Model files (the missing-models dialog offers the first five; the LaTo ones are from
huggingface.co/Alibaba-Research-Intelligence-Computing/LaTo):
- models/diffusion_models/lato.safetensors   (lato/lato.safetensors, ~25 GB)
- models/loras/lato.safetensors              (lora/lato.safetensors)
- models/vae/vae.safetensors                 (lato/vae.safetensors, the FLUX VAE)
- models/lato/Po_VQVAE/model.safetensors     (the landmark tokenizer)
- models/text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors  (Qwen2.5-VL-7B as ComfyUI's Qwen-Image ships it,
  Comfy-Org/Qwen-Image_ComfyUI; qwen_2.5_vl_7b.safetensors works too, loaded by core's Load CLIP as qwen_image)
Not downloadable from the dialog:
- models/lato/landmark_in.safetensors: the release ships landmark_in.pth (a pickle) in its code repository; repack
  it with  python -m lato_core.repack adapter landmark_in.pth landmark_in.safetensors  (or pick the .pth itself in
  LaTo Model Loader). Choose "(inside the checkpoint)" if your lato.safetensors already holds landmark_in.*.
Instead of Load CLIP, the LaTo Text Encoder Loader reads the stock Qwen2.5-VL-7B-Instruct folder from
models/text_encoders/; it also keeps the release's re-tokenizing of quoted text, which matters only for
instructions with quotes in them."""

# Needs the LaTo weights (see the README's model table); the demo skips it when they are not installed.
NEEDS_USER_MODELS = True

WORKFLOWS = {
    "lato_edit.json": ("LaTo expression and pose edit from an instruction", LATO_EDIT),
}

PRESENTATION = {
    "lato_edit.json": Presentation(
        note=NOTE, main_output=17,
        groups=(("Face", (1, 2, 3)), ("Landmarks", (4, 5, 6)), ("LaTo model", (7, 8, 9, 11)),
                ("Instruction and source", (10, 12, 13)), ("Sampling", (14,)), ("Output", (15, 16, 17, 18)))),
}
