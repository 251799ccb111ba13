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
