"""How good an edit is, the way the LaTo paper measures it: landmark error (Table 3), identity (dlib,
optional ArcFace), SSIM and the rectified identity score (Eq. 7)."""
from .identity import (ArcFaceModel, DLIB_SAME_PERSON, dlib_descriptor, dlib_similarity, identity_distance)
from .image import ssim, ssim_map
from .landmarks import LandmarkDistance, detect_matching_face, landmark_error, measure_landmark_error
from .rectified import (actual_amplitude, amplitude_ceiling, edit_magnitude, expected_amplitude,
                        params_from_landmarks, rectified_identity)
from .report import measure_edit, render_report, report_lines

__all__ = [
    "ArcFaceModel", "DLIB_SAME_PERSON", "LandmarkDistance", "actual_amplitude", "amplitude_ceiling",
    "detect_matching_face",
    "dlib_descriptor", "dlib_similarity", "edit_magnitude", "expected_amplitude", "identity_distance",
    "landmark_error", "measure_edit", "measure_landmark_error", "params_from_landmarks", "rectified_identity",
    "render_report", "report_lines", "ssim", "ssim_map",
]
