"""Example workflow: portrait + instruction -> predicted landmarks -> warp preview -> stitch."""
from . import Presentation
from .face import SAMPLE_IMAGE

INSTRUCTION = "turn her head 30 degrees left and smile slightly"

PREDICT_WARP_STITCH = [
    {"id": 1, "type": "LoadImage", "pos": [0, 0], "size": [300, 360], "widgets": {"image": SAMPLE_IMAGE}},
    {"id": 2, "type": "FaceEditDetectLandmarks", "pos": [340, 0], "size": [320, 420], "links": {"image": (1, 0)}},
    {"id": 3, "type": "FaceEditCrop", "pos": [700, 0], "size": [300, 420], "links": {"image": (1, 0), "landmarks": (2, 0)}},
    {"id": 4, "type": "FaceEditLandmarkPredictor", "pos": [1080, 0], "size": [340, 760],
     "widgets": {"instruction": INSTRUCTION}, "links": {"landmarks": (3, 1), "crops": (3, 0)}},
    {"id": 5, "type": "FaceEditLandmarkWarp", "pos": [1500, 0], "size": [320, 420],
     "links": {"crops": (3, 0), "source_landmarks": (3, 1), "target_landmarks": (4, 0)}},
    {"id": 6, "type": "FaceEditStitch", "pos": [1900, 0], "size": [320, 300],
     "links": {"image": (1, 0), "crops": (5, 0), "crop_info": (3, 2)}},
    {"id": 7, "type": "SaveImage", "pos": [2260, 0], "size": [360, 420], "title": "After (warp preview)",
     "widgets": {"filename_prefix": "face_edit/after"}, "links": {"images": (6, 0)}},
    {"id": 8, "type": "SaveImage", "pos": [340, 480], "size": [320, 380], "title": "Before",
     "widgets": {"filename_prefix": "face_edit/before"}, "links": {"images": (1, 0)}},
    {"id": 9, "type": "SaveImage", "pos": [1500, 480], "size": [320, 380], "title": "Predicted landmarks",
     "widgets": {"filename_prefix": "face_edit/predicted_overlay"}, "links": {"images": (4, 1)}},
    {"id": 10, "type": "FaceEditSaveLandmarks", "pos": [1080, 800], "size": [300, 100], "title": "Target landmarks",
     "widgets": {"filename_prefix": "face_edit/target_landmarks"}, "links": {"landmarks": (4, 0)}},
    {"id": 11, "type": "FaceEditReport", "pos": [1900, 360], "size": [340, 420],
     "links": {"source": (3, 0), "edited": (5, 0), "target_landmarks": (4, 0), "source_landmarks": (3, 1),
               "predictor_report": (4, 2)}},
    {"id": 12, "type": "SaveImage", "pos": [2260, 480], "size": [360, 380], "title": "Edit report",
     "widgets": {"filename_prefix": "face_edit/edit_report"}, "links": {"images": (11, 0)}},
]

NOTE = """Predict an expression and head pose from an instruction, preview it as a warp

Reads the instruction ("turn her head 30 degrees left and smile slightly"), predicts where the 68 landmarks move,
warps the face crop to them as a quick preview (not a generated image: LaTo does that), stitches it back and writes
a report of what moved.

Needs no model download in the default "parametric" mode. For the "vlm" mode, add a Landmark VLM Loader node: it
reads a model folder in models/lato/ (the LaTo release's Landmark_Predictor/ or a Qwen2.5-VL-Instruct folder). A
folder is not a single file, so the missing-models dialog cannot offer it: download it yourself."""

WORKFLOWS = {
    "face_predict_warp_stitch.json": ("Predicted expression and pose, as a warp preview", PREDICT_WARP_STITCH),
}

PRESENTATION = {
    "face_predict_warp_stitch.json": Presentation(
        note=NOTE, main_output=7,
        groups=(("Face", (1, 2, 3, 8)), ("Landmarks", (4, 10)), ("Warp preview", (5, 9)), ("Output", (6, 7, 11, 12)))),
}
