from lato_core.predictor.thin_plate_preview import warp_crops

from .common import CATEGORY, LANDMARKS, preview


class FaceEditLandmarkWarp:
    """Instant preview of a landmark edit: warp each face crop so its landmarks move to the targets."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "crops": ("IMAGE", {"tooltip": "Square face crops from Face Crop."}),
            "source_landmarks": (LANDMARKS, {"tooltip": "The crops' own landmarks (crop_landmarks from Face Crop)."}),
            "target_landmarks": (LANDMARKS, {"tooltip": "Where the points should go, e.g. from the Landmark Predictor."}),
            "smoothing": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.005, "tooltip":
                "0 moves every point exactly; more trades exactness for a smoother, calmer warp."}),
            "fold_guard": ("BOOLEAN", {"default": True, "tooltip":
                "Raise the smoothing only as far as needed so the picture never folds or smears (large head turns)."}),
        }}

    DESCRIPTION = 'An instant preview of an expression or pose edit: warps the crop so its landmarks move onto the targets (no diffusion weights needed).'
    OUTPUT_TOOLTIPS = ('The crop warped toward the target landmarks.',)
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("warped",)
    FUNCTION = "warp"
    CATEGORY = f"{CATEGORY}/landmarks"

    def warp(self, crops, source_landmarks, target_landmarks, smoothing, fold_guard):
        warped = warp_crops(crops, source_landmarks, target_landmarks, smoothing, fold_guard)
        return {"ui": preview(warped, "landmark_warp"), "result": (warped,)}


# node id -> (class, display name); nodes/__init__.py collects these
NODES = {
    "FaceEditLandmarkWarp": (FaceEditLandmarkWarp, "Landmark Warp (preview edit)"),
}
