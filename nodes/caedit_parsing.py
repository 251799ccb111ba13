"""Face Parsing Mask (by class name): a MASK from a SegFormer face-parsing folder in models/face_parsing.
Core: caedit_core/face_parsing.py:parse_regions."""
from __future__ import annotations

import os

from caedit_core.face_parsing import ALIASES, SEGFORMER_LABELS, parse_regions

from lato_core.face.batch import mask_preview

from .common import CATEGORY, or_hint, preview

PARSERS = "face_parsing"


def parser_folders() -> list[str]:
    import folder_paths

    if PARSERS not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[PARSERS] = ([os.path.join(folder_paths.models_dir, PARSERS)], set())
    return sorted({d for root in folder_paths.get_folder_paths(PARSERS) if os.path.isdir(root)
                   for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "config.json"))})


class FaceParsingMask:
    DESCRIPTION = "MASK of face-parsing classes chosen by name, from a SegFormer face-parsing folder in models/face_parsing."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Photo(s) or face crop(s) to parse."}),
            "parser": (or_hint(parser_folders(), "(put a SegFormer face-parsing folder in models/face_parsing/)"), {"tooltip": "A SegFormer face-parsing folder (config.json with id2label) in models/face_parsing."}),
            "regions": ("STRING", {"default": "brows", "tooltip":
                "Comma-separated classes by name (never index): " + ", ".join(SEGFORMER_LABELS) + "; groups: " + ", ".join(ALIASES) + "."}),
            "grow": ("INT", {"default": 0, "min": 0, "max": 128, "tooltip": "Dilate the mask by this many pixels (the paper's coarse masks)."}),
        }}

    OUTPUT_TOOLTIPS = ('1 where the chosen classes are.',)
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    FUNCTION = "mask"
    CATEGORY = f"{CATEGORY}/face"

    def mask(self, image, parser, regions, grow):
        import comfy.model_management as mm
        import folder_paths

        path = next(os.path.join(root, parser) for root in folder_paths.get_folder_paths(PARSERS)
                    if os.path.isdir(os.path.join(root, parser)))
        masks = parse_regions(path, image, regions, grow, mm.get_torch_device())
        return {"ui": preview(mask_preview(masks, image), "face_parsing"), "result": (masks,)}


NODES = {"FaceEditParsingMask": (FaceParsingMask, "Face Parsing Mask (by class name)")}
