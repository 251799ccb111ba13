"""Example workflows: portrait + region + attribute text -> (CA2 +) STFG inpaint -> feathered paste -> stitch.

The CA2 one needs an adapter trained with `python -m caedit_core train` in models/ca2 and the CLIP vision model it
was trained with; the training-free one runs STFG + Blended Diffusion on any SD1.5 inpainting checkpoint.
"""
from . import Presentation
from .face import SAMPLE_IMAGE

CHECKPOINT = "sd-v1-5-inpainting.safetensors"
CLIP_VISION = "clip-vit-large-patch14.safetensors"   # ViT-L/14, what the trainer's adapters expect by default
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
        {"id": 5, "type": "CheckpointLoaderSimple", "pos": [0, 580], "size": [320, 100], "widgets": {"ckpt_name": CHECKPOINT}},
        {"id": 6, "type": "CLIPTextEncode", "pos": [360, 580], "size": [320, 160], "title": "Attribute text",
         "widgets": {"text": ATTRIBUTE}, "links": {"clip": (5, 1)}},
        {"id": 7, "type": "CLIPTextEncode", "pos": [360, 790], "size": [320, 160], "title": "Negative",
         "widgets": {"text": NEGATIVE}, "links": {"clip": (5, 1)}},
        {"id": 8, "type": "InpaintModelConditioning", "pos": [720, 580], "size": [300, 140],
         "widgets": {"noise_mask": True},
         "links": {"positive": (6, 0), "negative": (7, 0), "vae": (5, 2), "pixels": (3, 0), "mask": (4, 0)}},
        {"id": 13, "type": "FaceEditSTFGGuider", "pos": [1100, 580], "size": [320, 500],
         "widgets": {"cfg": 7.5, "strength": 2.0, "prompt_text": ATTRIBUTE},
         "links": {"model": model, "positive": (8, 0), "negative": (8, 1), "mask": (4, 0), "clip": (5, 1)}},
        {"id": 14, "type": "KSamplerSelect", "pos": [1460, 580], "size": [300, 60], "widgets": {"sampler_name": "ddim"}},
        {"id": 15, "type": "BasicScheduler", "pos": [1460, 690], "size": [300, 110],
         "widgets": {"scheduler": "ddim_uniform", "steps": 50, "denoise": 1.0}, "links": {"model": (5, 0)}},
        {"id": 16, "type": "RandomNoise", "pos": [1460, 850], "size": [300, 80], "widgets": {"noise_seed": 42}},
        {"id": 17, "type": "SamplerCustomAdvanced", "pos": [1800, 580], "size": [300, 320],
         "links": {"noise": (16, 0), "guider": (13, 0), "sampler": (14, 0), "sigmas": (15, 0), "latent_image": (8, 2)}},
        {"id": 18, "type": "VAEDecode", "pos": [2180, 580], "size": [200, 50], "links": {"samples": (17, 0), "vae": (5, 2)}},
        {"id": 19, "type": "FaceEditCAEditPaste", "pos": [2180, 680], "size": [300, 120], "widgets": {"feather": 8},
         "links": {"edited": (18, 0), "source": (3, 0), "mask": (4, 0)}},
        {"id": 20, "type": "FaceEditStitch", "pos": [2520, 580], "size": [320, 300],
         "widgets": {"feather": 8.0, "mode": "replace"},
         "links": {"image": (1, 0), "crops": (19, 0), "crop_info": (3, 2), "mask": (4, 0)}},
        {"id": 21, "type": "SaveImage", "pos": [2880, 580], "size": [360, 420], "title": "Edited photo",
         "widgets": {"filename_prefix": "face_edit/caedit_photo"}, "links": {"images": (20, 0)}},
        {"id": 22, "type": "SaveImage", "pos": [2520, 940], "size": [320, 380], "title": "Edited crop",
         "widgets": {"filename_prefix": "face_edit/caedit_crop"}, "links": {"images": (19, 0)}},
        {"id": 23, "type": "SaveImage", "pos": [1400, 0], "size": [320, 380], "title": "Source crop",
         "widgets": {"filename_prefix": "face_edit/caedit_source"}, "links": {"images": (3, 0)}},
    ]
    if with_ca2:
        nodes += [
            {"id": 9, "type": "CLIPVisionLoader", "pos": [0, 1100], "size": [320, 60], "widgets": {"clip_name": CLIP_VISION}},
            {"id": 10, "type": "CLIPVisionEncode", "pos": [360, 1100], "size": [300, 80], "widgets": {"crop": "center"},
             "links": {"clip_vision": (9, 0), "image": (3, 0)}},
            {"id": 11, "type": "FaceEditCA2AdapterLoader", "pos": [0, 1230], "size": [320, 80], "widgets": {"adapter_name": ADAPTER}},
            {"id": 12, "type": "FaceEditCA2Adapter", "pos": [720, 1100], "size": [300, 220],
             "widgets": {"strength": 1.0, "refnet_strength": 1.0},
             "links": {"model": (5, 0), "ca2_adapter": (11, 0), "clip_vision_output": (10, 0), "mask": (4, 0),
                       "image": (3, 0), "vae": (5, 2)}},
        ]
    return sorted(nodes, key=lambda n: n["id"])


_CHECKPOINT_NOTE = f"""- models/checkpoints/{CHECKPOINT}: an SD1.5 inpainting checkpoint. The missing-models dialog offers
  a community safetensors conversion (huggingface.co/webui/stable-diffusion-inpainting) of RunwayML's
  sd-v1-5-inpainting.ckpt; the official repository (stable-diffusion-v1-5/stable-diffusion-inpainting) has only
  the .ckpt, which the dialog does not download. Any SD1.5 inpainting checkpoint works: pick it in the loader."""

NOTE_CA2 = f"""CA-Edit: change one face region from an attribute text, with a trained CA2 adapter

Finds the face, masks the chosen region (here: {REGIONS}), and inpaints it from the attribute text ("{ATTRIBUTE}")
with STFG guidance; the CA2 adapter adds the source crop's CLIP image features through its visual cross-attention
(and its reference net, when the adapter has one). The edit is pasted back with a feather and stitched into the photo.

Model files:
{_CHECKPOINT_NOTE}
- models/ca2/{ADAPTER}: there are no public CA-Edit weights; train it with  python -m caedit_core train
  (see  python -m caedit_core --help). No download link.
- models/clip_vision/{CLIP_VISION}: the CLIP vision model (ViT-L/14) the adapter was trained with, as one
  safetensors file. No download link here: use the vision tower your adapter was trained on."""

NOTE_FREE = f"""CA-Edit without training: change one face region from an attribute text

Finds the face, masks the chosen region (here: {REGIONS}), and inpaints it from the attribute text ("{ATTRIBUTE}")
with STFG guidance and Blended Diffusion on a plain SD1.5 inpainting checkpoint; the edit is pasted back with a
feather and stitched into the photo.

Model files:
{_CHECKPOINT_NOTE}"""

_GROUPS = (("Face and region", (1, 2, 3, 4, 23)), ("SD1.5 inpainting", (5, 6, 7, 8)))
_SAMPLING_AND_OUTPUT = (("Sampling", (13, 14, 15, 16, 17)), ("Output", (18, 19, 20, 21, 22)))

# Needs an SD1.5 inpainting checkpoint (and a trained CA2 adapter for the first); the demo skips them without.
NEEDS_USER_MODELS = True

WORKFLOWS = {
    "caedit_ca2_stfg_inpaint.json": ("CA-Edit region edit with a CA2 adapter", _workflow(True)),
    "caedit_training_free_stfg.json": ("CA-Edit region edit, training-free", _workflow(False)),
}

PRESENTATION = {
    "caedit_ca2_stfg_inpaint.json": Presentation(
        note=NOTE_CA2, main_output=21,
        groups=_GROUPS + (("CA2 adapter", (9, 10, 11, 12)),) + _SAMPLING_AND_OUTPUT),
    "caedit_training_free_stfg.json": Presentation(note=NOTE_FREE, main_output=21, groups=_GROUPS + _SAMPLING_AND_OUTPUT),
}
