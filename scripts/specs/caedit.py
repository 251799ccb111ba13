"""Example workflows: portrait + region + attribute text -> (CA2 +) STFG inpaint -> feathered paste -> stitch.

The CA2 one needs an adapter trained with `python -m caedit_core train` in models/ca2 and the CLIP vision model it
was trained with; the training-free one runs STFG + Blended Diffusion on any SD1.5 inpainting checkpoint.
"""
from .face import SAMPLE_IMAGE

CHECKPOINT = "sd-v1-5-inpainting.safetensors"
CLIP_VISION = "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
ADAPTER = "ca2_sd15_inpainting.safetensors"
ATTRIBUTE = "thick dark bushy eyebrows"
NEGATIVE = "blurry, lowres, deformed, watermark"
REGIONS = "brows"


def _workflow(with_ca2: bool) -> list[dict]:
    model = (12, 0) if with_ca2 else (5, 0)
    nodes = [
        {"id": 1, "type": "LoadImage", "pos": [0, 0], "size": [300, 360], "widgets": {"image": SAMPLE_IMAGE}},
        {"id": 2, "type": "FaceEditDetectLandmarks", "pos": [340, 0], "size": [320, 420], "links": {"image": (1, 0)}},
        {"id": 3, "type": "FaceEditCrop", "pos": [700, 0], "size": [300, 420], "links": {"image": (1, 0), "landmarks": (2, 0)}},
        {"id": 4, "type": "FaceEditRegionMask", "pos": [1040, 0], "size": [320, 420], "title": "Region (coarse mask)",
         "widgets": {"regions": REGIONS, "grow": 8, "convex_hull": True, "feather": 0.0},
         "links": {"landmarks": (3, 1), "image": (3, 0)}},
        {"id": 5, "type": "CheckpointLoaderSimple", "pos": [0, 480], "size": [320, 100], "widgets": {"ckpt_name": CHECKPOINT}},
        {"id": 6, "type": "CLIPTextEncode", "pos": [360, 480], "size": [320, 160], "title": "Attribute text",
         "widgets": {"text": ATTRIBUTE}, "links": {"clip": (5, 1)}},
        {"id": 7, "type": "CLIPTextEncode", "pos": [360, 680], "size": [320, 160], "title": "Negative",
         "widgets": {"text": NEGATIVE}, "links": {"clip": (5, 1)}},
        {"id": 8, "type": "InpaintModelConditioning", "pos": [720, 480], "size": [300, 140],
         "widgets": {"noise_mask": True},
         "links": {"positive": (6, 0), "negative": (7, 0), "vae": (5, 2), "pixels": (3, 0), "mask": (4, 0)}},
        {"id": 13, "type": "STFGGuider", "pos": [1400, 480], "size": [320, 360],
         "widgets": {"cfg": 7.5, "strength": 30.0},
         "links": {"model": model, "positive": (8, 0), "negative": (8, 1), "mask": (4, 0)}},
        {"id": 14, "type": "KSamplerSelect", "pos": [1400, 880], "size": [300, 60], "widgets": {"sampler_name": "ddim"}},
        {"id": 15, "type": "BasicScheduler", "pos": [1400, 980], "size": [300, 110],
         "widgets": {"scheduler": "ddim_uniform", "steps": 50, "denoise": 1.0}, "links": {"model": (5, 0)}},
        {"id": 16, "type": "RandomNoise", "pos": [1400, 1130], "size": [300, 80], "widgets": {"noise_seed": 42}},
        {"id": 17, "type": "SamplerCustomAdvanced", "pos": [1760, 480], "size": [300, 320],
         "links": {"noise": (16, 0), "guider": (13, 0), "sampler": (14, 0), "sigmas": (15, 0), "latent_image": (8, 2)}},
        {"id": 18, "type": "VAEDecode", "pos": [2100, 480], "size": [200, 50], "links": {"samples": (17, 0), "vae": (5, 2)}},
        {"id": 19, "type": "CAEditPaste", "pos": [2100, 580], "size": [300, 120], "widgets": {"feather": 8},
         "links": {"edited": (18, 0), "source": (3, 0), "mask": (4, 0)}},
        {"id": 20, "type": "FaceEditStitch", "pos": [2440, 480], "size": [320, 300],
         "widgets": {"feather": 8.0, "mode": "replace"},
         "links": {"image": (1, 0), "crops": (19, 0), "crop_info": (3, 2), "mask": (4, 0)}},
        {"id": 21, "type": "SaveImage", "pos": [2800, 480], "size": [360, 420], "title": "Edited photo",
         "widgets": {"filename_prefix": "face_edit/caedit_photo"}, "links": {"images": (20, 0)}},
        {"id": 22, "type": "SaveImage", "pos": [2440, 840], "size": [320, 380], "title": "Edited crop",
         "widgets": {"filename_prefix": "face_edit/caedit_crop"}, "links": {"images": (19, 0)}},
        {"id": 23, "type": "SaveImage", "pos": [1040, 480], "size": [320, 380], "title": "Source crop",
         "widgets": {"filename_prefix": "face_edit/caedit_source"}, "links": {"images": (3, 0)}},
    ]
    if with_ca2:
        nodes += [
            {"id": 9, "type": "CLIPVisionLoader", "pos": [0, 880], "size": [320, 60], "widgets": {"clip_name": CLIP_VISION}},
            {"id": 10, "type": "CLIPVisionEncode", "pos": [360, 880], "size": [300, 80], "widgets": {"crop": "center"},
             "links": {"clip_vision": (9, 0), "image": (3, 0)}},
            {"id": 11, "type": "CA2AdapterLoader", "pos": [720, 680], "size": [320, 80], "widgets": {"adapter_name": ADAPTER}},
            {"id": 12, "type": "CA2Adapter", "pos": [1060, 880], "size": [300, 220],
             "widgets": {"strength": 1.0, "refnet_strength": 1.0},
             "links": {"model": (5, 0), "ca2_adapter": (11, 0), "clip_vision_output": (10, 0), "mask": (4, 0),
                       "image": (3, 0), "vae": (5, 2)}},
        ]
    return sorted(nodes, key=lambda n: n["id"])


# Needs an SD1.5 inpainting checkpoint (and a trained CA2 adapter for the first); the demo skips them without.
NEEDS_USER_MODELS = True

WORKFLOWS = {
    "caedit_ca2_stfg_inpaint.json": ("Portrait + region + attribute text -> CA2 + STFG inpaint -> stitch", _workflow(True)),
    "caedit_training_free_stfg.json": ("Portrait + region + attribute text -> STFG inpaint, no adapter -> stitch",
                                       _workflow(False)),
}
