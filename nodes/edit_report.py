import json

from lato_core.face.detect import BACKENDS
from lato_core.metrics.batch import measure_batch

from .common import CATEGORY, LANDMARKS, preview


class FaceEditReport:
    """Measure an edit as the LaTo paper does: landmark error, identity, SSIM and the rectified identity score."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "source": ("IMAGE", {"tooltip": "The face crops before the edit (crops from Face Crop)."}),
            "edited": ("IMAGE", {"tooltip": "The edited crops, same size and order as the source crops."}),
            "target_landmarks": (LANDMARKS, {"tooltip": "The landmarks the edit was asked to follow, in crop space "
                                                        "(target_landmarks of the Landmark Predictor)."}),
            "detector": (list(BACKENDS), {"default": "dlib_hog", "tooltip":
                "Finds the landmarks on the edit for the landmark error; dlib_cnn and mediapipe find turned faces "
                "better. With dlib_hog, dlib_cnn retries when no face is found."}),
        }, "optional": {
            "source_landmarks": (LANDMARKS, {"tooltip": "The source crops' own landmarks (crop_landmarks from Face "
                                                        "Crop); detected on the source when not connected."}),
            "predictor_report": ("STRING", {"forceInput": True, "tooltip":
                "The Landmark Predictor's report: its parameters give the expected edit amplitude of Eq. 7. Without "
                "it the head-pose change between source and target landmarks is used."}),
            "arcface_onnx": ("STRING", {"default": "", "tooltip":
                "Optional path of an ArcFace ONNX model (e.g. insightface w600k_r50.onnx; needs onnxruntime) for the "
                "paper's ArcFace identity; empty uses dlib's offline face descriptor."}),
        }}

    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("report_image", "metrics_json")
    OUTPUT_TOOLTIPS = ("Source | edit with target (green) and detected (red) points, the numbers below.",
                       "The metrics of every face as JSON.")
    FUNCTION = "measure"
    CATEGORY = CATEGORY

    def measure(self, source, edited, target_landmarks, detector, source_landmarks=None, predictor_report="",
                arcface_onnx=""):
        images, results = measure_batch(source, edited, target_landmarks, source_landmarks, predictor_report,
                                        arcface_onnx, detector)
        return {"ui": preview(images, "edit_report"), "result": (images, json.dumps(results, indent=1))}


# node id -> (class, display name); nodes/__init__.py collects these
NODES = {
    "FaceEditReport": (FaceEditReport, "Edit Report (landmark error, identity, SSIM)"),
}
