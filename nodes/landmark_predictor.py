import json

from lato_core.face.batch import caption_batch, draw_batch
from lato_core.predictor.face_model import EXPRESSIONS
from lato_core.predictor.predict import MODES, Controls, predict_targets, report_lines
from lato_core.predictor.vlm import VlmPredictor

from .common import CATEGORY, LANDMARKS, PACK_MODEL_FOLDER, model_subfolders, preview, resolve_subfolder

VLM = "LANDMARK_VLM"
SLIDER_EXPRESSIONS = [e for e in EXPRESSIONS if e != "neutral"]
NO_VLM_HINT = "(put a Qwen2.5-VL or LaTo Landmark_Predictor folder in models/lato/)"


class FaceEditLandmarkVLMLoader:
    """Load a VLM landmark predictor: the LaTo release's Landmark_Predictor (Qwen3-VL) or a Qwen2.5-VL folder."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "folder": (model_subfolders(PACK_MODEL_FOLDER, NO_VLM_HINT), {"tooltip": "A model folder under models/lato/ (with config.json, tokenizer and "
                                                   "*.safetensors), e.g. models/lato/Landmark_Predictor."}),
        }}

    DESCRIPTION = "Loads the LaTo release's Landmark_Predictor (Qwen3-VL) or a Qwen2.5-VL folder to predict target landmarks from an instruction."
    OUTPUT_TOOLTIPS = ("For the Landmark Predictor's vlm input.",)
    RETURN_TYPES = (VLM,)
    RETURN_NAMES = ("vlm",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/landmarks"

    def load(self, folder):
        # VlmPredictor names the folder and the missing file when the folder is absent or incomplete.
        return (VlmPredictor(resolve_subfolder(PACK_MODEL_FOLDER, folder)),)


class FaceEditLandmarkPredictor:
    """Target landmarks from an instruction ("turn her head 30 degrees left and smile slightly") and sliders."""

    @classmethod
    def INPUT_TYPES(cls):
        angle = lambda what: ("FLOAT", {"default": 0.0, "min": -90.0, "max": 90.0, "step": 1.0, "tooltip": what})
        slider = lambda what: ("FLOAT", {"default": 0.0, "min": -1.0, "max": 1.0, "step": 0.05, "tooltip": what})
        required = {
            "landmarks": (LANDMARKS, {"tooltip": "Source landmarks on the face crop (crop_landmarks from Face Crop)."}),
            "instruction": ("STRING", {"multiline": True, "default": "turn her head 30 degrees left and smile slightly",
                                       "tooltip": "English edit: expressions (happy, sad, angry, surprised, fearful, "
                                                  "disgusted; slightly/strongly; 'neutral' removes the photo's own "
                                                  "expression) and head turns in degrees or words. Left/right are the "
                                                  "subject's own sides. May be empty; at most 2000 characters. Turns "
                                                  "past yaw 90 / pitch 70 / roll 60 are capped with a warning."}),
            "mode": (list(MODES), {"default": "parametric", "tooltip":
                "parametric: instant, no weights. vlm: the loaded VLM only (errors if its answer is unusable). "
                "vlm_with_fallback: the VLM, or the parametric predictor when its answer fails the checks."}),
            "yaw": angle("Extra head turn in degrees; positive = toward the subject's own left."),
            "pitch": angle("Extra nod in degrees; positive = chin up."),
            "roll": angle("Extra tilt in degrees; positive = crown toward the subject's left shoulder."),
        }
        for name in SLIDER_EXPRESSIONS:
            required[name] = ("FLOAT", {"default": 0.0, "min": -1.0, "max": 2.0, "step": 0.05,
                                        "tooltip": f"Add '{name}': 0.5 slightly, 1 normally, 1.5 strongly."})
        required["mouth_open"] = slider("1 opens the mouth wide, -1 closes the lips.")
        required["blink"] = slider("1 closes the eyes, -1 opens them wide.")
        required["brow_raise"] = slider("1 raises the brows, -1 lowers and knits them.")
        required["keep_centre"] = ("BOOLEAN", {"default": False, "tooltip":
            "Keep the landmarks' centre still when the head turns (otherwise it turns about a point between the ears)."})
        return {"required": required, "optional": {
            "crops": ("IMAGE", {"tooltip": "The face crops: needed by the VLM, and used for the preview."}),
            "vlm": (VLM, {"tooltip": "From the VLM landmark predictor loader (modes vlm / vlm_with_fallback)."}),
            "neutral": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                "Remove the photo's own expression first: 1 = fully neutral (closed relaxed mouth, relaxed brows "
                "and lids), 0.5 = halfway. Other expressions are added after. Same as 'neutral' in the instruction."}),
        }}

    DESCRIPTION = 'Turns an instruction ("turn her head 30 degrees left and smile slightly") and sliders into target landmarks for expression and head pose: parametric (3D face, no weights) or with the VLM.'
    RETURN_TYPES = (LANDMARKS, "IMAGE", "STRING")
    RETURN_NAMES = ("target_landmarks", "preview", "report")
    OUTPUT_TOOLTIPS = ("Where each landmark should go.", "The targets drawn over the crop.",
                       "JSON: which predictor was used, the parsed parameters, warnings, fallback reasons.")
    FUNCTION = "predict"
    CATEGORY = f"{CATEGORY}/landmarks"

    def predict(self, landmarks, instruction, mode, yaw, pitch, roll, mouth_open, blink, brow_raise, keep_centre,
                crops=None, vlm=None, neutral=0.0, **expressions):
        expressions["neutral"] = neutral
        controls = Controls(yaw, pitch, roll, expressions, mouth_open, blink, brow_raise)
        targets, reports = predict_targets(landmarks, instruction, controls, mode, vlm, crops, keep_centre)
        drawn = draw_batch(targets, crops)
        text = json.dumps(reports, indent=1, default=str)
        shown = caption_batch(drawn, targets, [report_lines(r) for r in reports])   # the frontend shows images
        return {"ui": {**preview(shown, "predicted"), "text": [text]}, "result": (targets, drawn, text)}


NODES = {
    "FaceEditLandmarkPredictor": (FaceEditLandmarkPredictor, "Landmark Predictor (expression, smile, head turn, pose)"),
    "FaceEditLandmarkVLMLoader": (FaceEditLandmarkVLMLoader, "Load VLM Landmark Predictor"),
}
