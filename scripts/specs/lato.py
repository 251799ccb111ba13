"""Example workflow: portrait + instruction -> detect -> crop -> predict landmarks -> tokens -> core KSampler on the
native LaTo MODEL (LoRA through core's LoraLoaderModelOnly) -> decode -> stitch. File names are the LaTo release's, in the folders the README's model table gives."""
from .face import SAMPLE_IMAGE
from .predictor import INSTRUCTION

RELEASE_FILES = {
    "dit": "lato.safetensors",                        # models/diffusion_models/
    "adapter": "landmark_in.pth",                     # models/lato/
    "lora": "lato.safetensors",                       # models/loras/
    "tokenizer": "Po_VQVAE/model.safetensors",        # models/lato/
    "text_encoder": "Qwen2.5-VL-7B-Instruct",         # models/text_encoders/
    "vae": "vae.safetensors",                         # models/vae/
}

LATO_EDIT = [
    {"id": 1, "type": "LoadImage", "pos": [0, 0], "size": [300, 360], "widgets": {"image": SAMPLE_IMAGE}},
    {"id": 2, "type": "FaceEditDetectLandmarks", "pos": [340, 0], "size": [320, 420], "links": {"image": (1, 0)}},
    {"id": 3, "type": "FaceEditCrop", "pos": [700, 0], "size": [300, 420], "links": {"image": (1, 0), "landmarks": (2, 0)}},
    {"id": 4, "type": "FaceEditLandmarkPredictor", "pos": [1040, 0], "size": [340, 760],
     "widgets": {"instruction": INSTRUCTION}, "links": {"landmarks": (3, 1), "crops": (3, 0)}},
    {"id": 5, "type": "LaToTokenizerLoader", "pos": [1040, 800], "size": [340, 80],
     "widgets": {"tokenizer_name": RELEASE_FILES["tokenizer"]}},
    {"id": 6, "type": "LaToLandmarkTokens", "pos": [1420, 0], "size": [300, 80],
     "links": {"tokenizer": (5, 0), "landmarks": (4, 0)}},
    {"id": 7, "type": "LaToModelLoader", "pos": [340, 500], "size": [340, 130],
     "widgets": {"dit_name": RELEASE_FILES["dit"], "landmark_adapter": RELEASE_FILES["adapter"]}},
    {"id": 8, "type": "LoraLoaderModelOnly", "pos": [340, 670], "size": [340, 90],
     "widgets": {"lora_name": RELEASE_FILES["lora"], "strength_model": 1.0}, "links": {"model": (7, 0)}},
    {"id": 9, "type": "LaToTextEncoderLoader", "pos": [700, 500], "size": [320, 80],
     "widgets": {"folder": RELEASE_FILES["text_encoder"]}},
    {"id": 10, "type": "LaToTextEncode", "pos": [1420, 140], "size": [320, 220], "widgets": {"instruction": INSTRUCTION},
     "links": {"crops": (3, 0), "text_encoder": (9, 0)}},
    {"id": 11, "type": "VAELoader", "pos": [700, 640], "size": [320, 80], "widgets": {"vae_name": RELEASE_FILES["vae"]}},
    {"id": 12, "type": "VAEEncode", "pos": [1420, 400], "size": [240, 60], "links": {"pixels": (3, 0), "vae": (11, 0)}},
    {"id": 13, "type": "LaToEditConditioning", "pos": [1780, 140], "size": [320, 140],
     "links": {"positive": (10, 0), "negative": (10, 1), "source_latent": (12, 0), "landmark_tokens": (6, 0)}},
    {"id": 14, "type": "KSampler", "pos": [2140, 0], "size": [320, 470],
     "widgets": {"seed": 0, "steps": 28, "cfg": 4.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0},
     "links": {"model": (8, 0), "positive": (13, 0), "negative": (13, 1), "latent_image": (12, 0)}},
    {"id": 15, "type": "VAEDecode", "pos": [2500, 0], "size": [240, 60], "links": {"samples": (14, 0), "vae": (11, 0)}},
    {"id": 16, "type": "FaceEditStitch", "pos": [2500, 120], "size": [320, 300],
     "links": {"image": (1, 0), "crops": (15, 0), "crop_info": (3, 2)}},
    {"id": 17, "type": "SaveImage", "pos": [2860, 0], "size": [360, 420], "title": "LaTo edit",
     "widgets": {"filename_prefix": "face_edit/lato"}, "links": {"images": (16, 0)}},
    {"id": 18, "type": "SaveImage", "pos": [2860, 460], "size": [320, 380], "title": "Edited crop",
     "widgets": {"filename_prefix": "face_edit/lato_crop"}, "links": {"images": (15, 0)}},
]

# Needs the LaTo weights (see the README's model table); the demo skips it when they are not installed.
NEEDS_USER_MODELS = True

WORKFLOWS = {
    "lato_edit.json": ("Portrait + instruction -> landmarks -> LaTo tokens -> core KSampler -> decode -> stitch",
                       LATO_EDIT),
}
