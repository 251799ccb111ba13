from lato_core.errors import FaceEditError
from lato_core.face.batch import batch_count, draw_batch
from lato_core.predictor.point_edits import apply_point_edits, parse_point_edits

from .common import CATEGORY, LANDMARKS, preview

START_FROM = ("detection", "target")
EDITOR_UI_KEY = "face_edit_editor"  # web/landmark_editor.js reads this from the node's executed output


class FaceEditLandmarkEditor:
    """Move the 68 landmarks by hand on the canvas; the moves are saved in the workflow."""

    DESCRIPTION = ("Landmark editor on the canvas: run once to load the face crop, then drag a point, or a "
                   "whole eye, brow, nose, lips or jaw (Group), with Mirror moving the other side along; "
                   "Undo and Reset. Start from the detected landmarks or from a predictor's target. The moves "
                   "are stored in the workflow and applied on every run; the output feeds Landmark Warp or LaTo.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "crops": ("IMAGE", {"tooltip": "The face crops the points are drawn on (crops from Face Crop)."}),
            "landmarks": (LANDMARKS, {"tooltip": "The crops' detected landmarks (crop_landmarks from Face Crop)."}),
            "start_from": (list(START_FROM), {"default": "detection", "tooltip":
                "detection: edit the detected points. target: edit the points from target_landmarks "
                "(e.g. the Landmark Predictor's), to fine-tune a predicted expression."}),
            "edits": ("STRING", {"default": "{}", "tooltip":
                "The hand moves as JSON offsets per face, written by the editor widget (hidden on the canvas)."}),
        }, "optional": {
            "target_landmarks": (LANDMARKS, {"tooltip": "Predicted targets to start from when start_from is 'target'."}),
        }}

    RETURN_TYPES = (LANDMARKS, "IMAGE")
    RETURN_NAMES = ("landmarks", "preview")
    OUTPUT_TOOLTIPS = ("The edited landmarks, on the crop's canvas: connect to Landmark Warp's target or LaTo tokens.",
                       "The edited points drawn over the crops.")
    FUNCTION = "edit"
    OUTPUT_NODE = True  # runs on its own too, so one click loads the crop into the widget
    CATEGORY = f"{CATEGORY}/landmarks"

    def edit(self, crops, landmarks, start_from, edits, target_landmarks=None):
        base = _start_points(landmarks, start_from, target_landmarks)
        batch_count(base, crops)  # every face must belong to one of the crops
        canvas = (crops.shape[2], crops.shape[1])
        for face in base:
            if face.image_size != canvas:
                raise FaceEditError(f"The landmarks are on a {face.width}x{face.height} canvas but the crops are "
                                    f"{canvas[0]}x{canvas[1]}: connect Face Crop's crop_landmarks, not the photo's.")
        edited = apply_point_edits(base, parse_point_edits(edits))
        shown = preview(crops, "landmark_editor")["images"]
        faces = [{"crop": shown[f.image_index], "points": f.points.round(3).tolist(), "image_size": list(f.image_size),
                  "visibility": f.visibility.tolist()} for f in base]
        drawn = draw_batch(edited, crops)
        return {"ui": {EDITOR_UI_KEY: faces}, "result": (edited, drawn)}


def _start_points(landmarks, start_from, target_landmarks):
    if start_from not in START_FROM:
        raise FaceEditError(f"start_from is {start_from!r}; use one of {', '.join(START_FROM)}.")
    if start_from == "detection":
        return landmarks
    if target_landmarks is None:
        raise FaceEditError("start_from is 'target' but nothing is connected to target_landmarks: connect the "
                            "Landmark Predictor's target_landmarks, or set start_from to 'detection'.")
    if len(target_landmarks) != len(landmarks):
        raise FaceEditError(f"target_landmarks has {len(target_landmarks)} face(s) but landmarks has "
                            f"{len(landmarks)}; connect targets predicted from these same landmarks.")
    return target_landmarks


NODES = {
    "FaceEditLandmarkEditor": (FaceEditLandmarkEditor, "Landmark Editor (drag landmarks: expression, pose)"),
}
