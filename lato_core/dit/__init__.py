"""Step1X-Edit / LaTo diffusion transformer in pure torch (scaled_dot_product_attention, no flash-attn or triton).

Module and parameter names follow the BFL FLUX key layout, so a Step1X-Edit or LaTo checkpoint loads without renaming.
"""
from .config import DiTConfig
from .loading import LoadedDiT, detect_checkpoint_kind, load_dit, load_landmark_in
from .model import Step1XEditDiT
from .rope import image_ids, landmark_ids, text_ids

__all__ = [
    "DiTConfig",
    "LoadedDiT",
    "Step1XEditDiT",
    "detect_checkpoint_kind",
    "image_ids",
    "landmark_ids",
    "load_dit",
    "load_landmark_in",
    "text_ids",
]
