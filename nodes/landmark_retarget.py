import json

from lato_core.errors import FaceSelectionError
from lato_core.face.batch import draw_batch
from lato_core.predictor.retarget import RetargetParts, retarget_expression

from .common import CATEGORY, LANDMARKS, preview


class FaceEditExpressionTransfer:
    """Target landmarks with a reference photo's expression and head pose on your face's own shape."""

    DESCRIPTION = ("Expression and pose from a reference photo: photo B's eye opening, brows, mouth (smile, "
                   "opening) and head turn, retargeted onto face A through a fitted 3D face. A keeps its own "
                   "shape and proportions (eye spacing, nose, jaw); only B's deformation and rotation are "
                   "carried. Feed the result to Landmark Warp or LaTo Landmark Tokens.")

    @classmethod
    def INPUT_TYPES(cls):
        part = lambda what: ("BOOLEAN", {"default": True, "tooltip": what})
        return {"required": {
            "landmarks": (LANDMARKS, {"tooltip": "Face A, the face to edit: crop_landmarks from Face Crop."}),
            "reference_landmarks": (LANDMARKS, {"tooltip":
                "Face B, whose expression and pose are copied: landmarks of the reference photo (any size)."}),
            "reference_face": ("INT", {"default": 0, "min": 0, "max": 63, "tooltip":
                "Which face of the reference landmarks to use, counted from 0."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05, "tooltip":
                "0 leaves A as it is, 1 gives A the reference's expression and pose, above 1 exaggerates."}),
            "eyes": part("Carry how open the reference's eyes are (lid gap / eye width)."),
            "brows": part("Carry the reference's brow raise, lowering and inner-brow lift."),
            "mouth": part("Carry the reference's mouth opening and lip shape (smile, frown...)."),
            "pose": part("Turn A's head to the reference's yaw, pitch and roll."),
        }, "optional": {
            "crops": ("IMAGE", {"tooltip": "Face A's crops, to draw the targets on for the preview."}),
        }}

    RETURN_TYPES = (LANDMARKS, "IMAGE", "STRING")
    RETURN_NAMES = ("target_landmarks", "preview", "report")
    OUTPUT_TOOLTIPS = ("Face A's landmarks with the reference's expression and pose, on A's canvas.",
                       "The targets drawn over A's crops.",
                       "JSON: pose in degrees, eye openness and mouth gap of both faces, the parts carried.")
    FUNCTION = "transfer"
    CATEGORY = f"{CATEGORY}/landmarks"

    def transfer(self, landmarks, reference_landmarks, reference_face, strength, eyes, brows, mouth, pose,
                 crops=None):
        if not 0 <= reference_face < len(reference_landmarks):
            raise FaceSelectionError(f"reference_face is {reference_face}, but the reference has "
                                     f"{len(reference_landmarks)} face(s); pick 0..{len(reference_landmarks) - 1}, "
                                     "or check that Detect Face Landmarks found a face in the reference photo.")
        reference = reference_landmarks[reference_face]
        parts = RetargetParts(eyes, brows, mouth, pose)
        results = [retarget_expression(face, reference, strength, parts) for face in landmarks]
        targets = [target for target, _ in results]
        drawn = draw_batch(targets, crops)
        text = json.dumps([report for _, report in results], indent=1)
        return {"ui": {**preview(drawn, "expression_transfer"), "text": [text]}, "result": (targets, drawn, text)}


NODES = {
    "FaceEditExpressionTransfer": (FaceEditExpressionTransfer, "Expression Transfer (expression and pose from a reference photo)"),
}
