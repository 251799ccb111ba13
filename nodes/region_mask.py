from lato_core.face.batch import mask_batch, mask_preview
from lato_core.face.regions import REGIONS

from .common import CATEGORY, LANDMARKS, preview


class FaceEditRegionMask:
    """A MASK (1 = edit) of named face regions, drawn from the landmarks."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "landmarks": (LANDMARKS, {"tooltip": "Landmarks of the photo or crop the mask is for; the mask has their image size."}),
            "regions": ("STRING", {"default": "left_eye, right_eye", "tooltip":
                f"Comma-separated region names: {', '.join(REGIONS)}; also eyes, brows, lips, face. "
                "Left and right are the subject's own sides."}),
            "grow": ("INT", {"default": 0, "min": -128, "max": 256, "tooltip": "Grow (positive) or shrink (negative) the mask by pixels."}),
            "convex_hull": ("BOOLEAN", {"default": False, "tooltip": "Fill each region's convex hull instead of its outline."}),
            "feather": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 128.0, "step": 0.5, "tooltip": "Soften the edge over about this many pixels."}),
        }, "optional": {
            "image": ("IMAGE", {"tooltip": "Only for the preview: shows the mask over this image."}),
        }}

    DESCRIPTION = 'A MASK of named face regions (eyes, brows, lips, nose, face oval, ...) from the landmarks: the region to inpaint for CA-Edit.'
    OUTPUT_TOOLTIPS = ('1 where the edit goes.',)
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    FUNCTION = "mask"
    CATEGORY = f"{CATEGORY}/face"

    def mask(self, landmarks, regions, grow, convex_hull, feather, image=None):
        masks = mask_batch(landmarks, regions, grow, convex_hull, feather, image.shape[0] if image is not None else None)
        return {"ui": preview(mask_preview(masks, image), "region_mask"), "result": (masks,)}


# node id -> (class, display name); nodes/__init__.py collects these
NODES = {
    "FaceEditRegionMask": (FaceEditRegionMask, "Face Region Mask"),
}
