"""ComfyUI node classes of the pack: thin doors onto lato_core and caedit_core.

Each node file ends with NODES = {node id: (class, display name)}; add a new file to FEATURE_FILES.
"""
from . import (caedit_adapter, caedit_parsing, caedit_paste, caedit_stfg, edit_report, face_crop, face_detect,
               landmark_convert, landmark_draw, landmark_io, landmark_predictor, landmark_warp,
               lato_edit_conditioning, lato_guider, lato_landmark_tokens, lato_loaders, lato_schedule,
               lato_text_encode, region_mask)
from . import landmark_editor, landmark_retarget

FEATURE_FILES = (face_detect, face_crop, landmark_draw, region_mask, landmark_predictor, landmark_warp, landmark_io,
                 landmark_convert, lato_loaders, lato_landmark_tokens, lato_text_encode, lato_edit_conditioning,
                 lato_guider, lato_schedule, edit_report, caedit_adapter, caedit_stfg, caedit_paste, caedit_parsing)
FEATURE_FILES += (landmark_retarget, landmark_editor)

NODE_CLASS_MAPPINGS = {key: cls for module in FEATURE_FILES for key, (cls, _) in module.NODES.items()}
NODE_DISPLAY_NAME_MAPPINGS = {key: name for module in FEATURE_FILES for key, (_, name) in module.NODES.items()}
