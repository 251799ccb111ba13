"""CA-Edit Paste (feathered): the final paste, exact outside the mask. Core: caedit_core/blend.py:paste_pixels."""
from __future__ import annotations

from caedit_core.blend import paste_pixels

from .common import CATEGORY


class FaceEditCAEditPaste:
    DESCRIPTION = "Final paste of the decoded edit into the source, feathered inward: pixels outside the mask stay the source's."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "edited": ("IMAGE", {"tooltip": "The decoded inpainting result."}),
            "source": ("IMAGE", {"tooltip": "The photo (or crop) that was edited, same size."}),
            "mask": ("MASK", {"tooltip": "Region that was edited, 1 = edit."}),
            "feather": ("INT", {"default": 8, "min": 0, "max": 256, "tooltip": "Inward ramp width in pixels; 0 = hard edge."}),
        }}

    OUTPUT_TOOLTIPS = ('The edit pasted into the source.',)
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "paste"
    CATEGORY = f"{CATEGORY}/ca-edit"

    def paste(self, edited, source, mask, feather):
        if edited.shape[1:3] != source.shape[1:3]:
            raise ValueError(f"edited is {tuple(edited.shape[1:3])}, source {tuple(source.shape[1:3])}: sizes must match")
        return (paste_pixels(edited[..., :3], source[..., :3], mask, feather),)


NODES = {"FaceEditCAEditPaste": (FaceEditCAEditPaste, "CA-Edit Paste (feathered)")}
