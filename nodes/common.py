"""What every node file shares: the custom type names and the preview helper."""
from __future__ import annotations

import os
import uuid

import numpy as np
from PIL import Image

# A list of lato_core.face.landmarks.FaceLandmarks, each tagged with its image's batch index.
LANDMARKS = "FACE_LANDMARKS_68"
# A list of lato_core.face.crop.CropTransform, one per crop, in crop order.
CROP_INFO = "FACE_CROP_INFO"
CATEGORY = "face edit"


def preview(images, prefix: str = "face_edit") -> dict:
    """Save (B, H, W, 3) tensors as temp PNGs and return the ui dict the frontend shows on the node."""
    import folder_paths

    folder = folder_paths.get_temp_directory()
    os.makedirs(folder, exist_ok=True)
    entries = []
    for picture in images:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}.png"
        Image.fromarray((picture.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)).save(
            os.path.join(folder, name), compress_level=1)
        entries.append({"filename": name, "subfolder": "", "type": "temp"})
    return {"images": entries}


def or_hint(choices: list[str], hint: str) -> list[str]:
    """A model menu that is never empty: with no file yet it shows which file goes in which folder."""
    return choices or [hint]


PACK_MODEL_FOLDER = "lato"  # models/lato/: tokenizer, landmark adapter, VLM landmark predictor folders


def pack_model_paths() -> list[str]:
    """The models/lato/ folders (registered once; extra_model_paths.yaml may add more)."""
    import folder_paths

    if PACK_MODEL_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(PACK_MODEL_FOLDER, os.path.join(folder_paths.models_dir, PACK_MODEL_FOLDER))
    return folder_paths.get_folder_paths(PACK_MODEL_FOLDER)


def model_subfolders(folder_name: str, hint: str) -> list[str]:
    """Subfolders holding a config.json under a ComfyUI model folder (transformers model folders)."""
    import folder_paths

    paths = pack_model_paths() if folder_name == PACK_MODEL_FOLDER else folder_paths.get_folder_paths(folder_name)
    found = []
    for base in paths:
        for dirpath, _, files in os.walk(base, followlinks=True):
            if "config.json" in files:
                found.append(os.path.relpath(dirpath, base))
    return sorted(found) or [hint]


def resolve_subfolder(folder_name: str, name: str) -> str:
    """Full path of a model subfolder; the first candidate when absent, so the loader names what is missing."""
    import folder_paths

    paths = pack_model_paths() if folder_name == PACK_MODEL_FOLDER else folder_paths.get_folder_paths(folder_name)
    for base in paths:
        if os.path.isdir(os.path.join(base, name)):
            return os.path.join(base, name)
    return os.path.join(paths[0], name)
