"""Target landmarks for an edit: instruction parsing (parse), the 3D face model (face_model) and the
geometry that moves 68 landmarks to a new head pose and expression (geometry)."""
from .geometry import estimate_pose, fit_face, predict_landmarks
from .parse import EditParams, parse_instruction

__all__ = ["EditParams", "estimate_pose", "fit_face", "parse_instruction", "predict_landmarks"]
