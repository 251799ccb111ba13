import json

from lato_core.face.detect import BACKENDS
from lato_core.metrics.batch import measure_batch

from lato_core.errors import FaceEditError

from .common import CATEGORY, LANDMARKS, preview

ARCFACE_FOLDERS = ("arcface", "insightface")  # models/arcface/, models/insightface/ (extra_model_paths.yaml may add)
NO_ARCFACE = "none"


def _arcface_folders():
    import os

    import folder_paths

    for name in ARCFACE_FOLDERS:
        if name not in folder_paths.folder_names_and_paths:
            folder_paths.folder_names_and_paths[name] = ([os.path.join(folder_paths.models_dir, name)], {".onnx"})
    return folder_paths


def arcface_choices() -> list[str]:
    """'none' and every .onnx file of the ArcFace model folders, as 'folder/file'."""
    folder_paths = _arcface_folders()
    found = [f"{name}/{f}" for name in ARCFACE_FOLDERS for f in folder_paths.get_filename_list(name)
             if f.lower().endswith(".onnx")]
    return [NO_ARCFACE] + sorted(found)


def arcface_path(choice: str) -> str:
    """Full path of a chosen model ('' for none); only names from the model folders are ever opened."""
    if choice in ("", NO_ARCFACE):
        return ""
    folder, _, name = choice.partition("/")
    full = _arcface_folders().get_full_path(folder, name) if folder in ARCFACE_FOLDERS and name else None
    if full is None:
        raise FaceEditError(f"arcface_onnx must be one of the .onnx files in models/{' or models/'.join(ARCFACE_FOLDERS)}"
                            " (or none). Put the ArcFace model there and refresh the page to choose it.")
    return full


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
            "arcface_onnx": (arcface_choices(), {"default": NO_ARCFACE, "tooltip":
                "An ArcFace ONNX model from models/arcface/ or models/insightface/ (e.g. insightface w600k_r50.onnx; "
                "needs onnxruntime) for the paper's ArcFace identity; none uses dlib's offline face descriptor."}),
        }}

    DESCRIPTION = 'Measures an edit as the LaTo paper does: landmark error, identity distance, SSIM and the rectified identity score, printed on the report image it shows.'
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("report_image", "metrics_json")
    OUTPUT_TOOLTIPS = ("Source | edit with target (green) and detected (red) points, the numbers below.",
                       "The metrics of every face as JSON.")
    FUNCTION = "measure"
    CATEGORY = f"{CATEGORY}/measure"

    @classmethod
    def VALIDATE_INPUTS(cls, arcface_onnx=NO_ARCFACE):
        # Checked here (not by ComfyUI's list check) so workflows saved with the old empty text still load;
        # anything but a listed model name is refused without touching the file system.
        if arcface_onnx in ("", *arcface_choices()):
            return True
        return (f"arcface_onnx must be one of the .onnx files in models/{' or models/'.join(ARCFACE_FOLDERS)} (or "
                "none); put the ArcFace model there and refresh the page to choose it.")

    def measure(self, source, edited, target_landmarks, detector, source_landmarks=None, predictor_report="",
                arcface_onnx=NO_ARCFACE):
        images, results = measure_batch(source, edited, target_landmarks, source_landmarks, predictor_report,
                                        arcface_path(arcface_onnx), detector)
        return {"ui": preview(images, "edit_report"), "result": (images, json.dumps(results, indent=1))}


# node id -> (class, display name); nodes/__init__.py collects these
NODES = {
    "FaceEditReport": (FaceEditReport, "Edit Report (landmark error, identity, SSIM)"),
}
