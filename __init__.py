"""ComfyUI entry point of the face-editing pack (LaTo landmark editing, CA-Edit local inpainting).

The cores are imported by their own names (lato_core, caedit_core), so this folder goes on sys.path,
at the end, so that it never shadows ComfyUI's own modules.
"""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.append(_here)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

WEB_DIRECTORY = "./web"  # the frontend extensions: the Landmark Editor's canvas widget

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
