from lato_core.face.batch import draw_batch

from .common import CATEGORY, LANDMARKS, preview


class FaceEditDrawLandmarks:
    """Draw 68 landmarks in the LaTo release's colours, over a photo or on black."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "landmarks": (LANDMARKS, {"tooltip": "Landmarks to draw."}),
            "lines": ("BOOLEAN", {"default": True, "tooltip": "Connect the points of each feature (eye and lip outlines closed)."}),
            "numbers": ("BOOLEAN", {"default": False, "tooltip": "Write each point's iBUG-68 index next to it."}),
            "radius": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 32.0, "step": 0.5, "tooltip":
                "Dot radius in pixels; 0 = 4 px per 512 px, as the release draws."}),
        }, "optional": {
            "image": ("IMAGE", {"tooltip": "Draw over this image; leave empty for a black canvas of the landmarks' size."}),
        }}

    DESCRIPTION = "Draws 68 landmarks in the LaTo release's colours (jaw, brows, nose, eyes, lips), on the image or a black canvas."
    OUTPUT_TOOLTIPS = ('The landmarks drawn.',)
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "draw"
    CATEGORY = f"{CATEGORY}/face"

    def draw(self, landmarks, lines, numbers, radius, image=None):
        drawn = draw_batch(landmarks, image, radius or None, lines, numbers)
        return {"ui": preview(drawn, "landmarks_drawn"), "result": (drawn,)}


# node id -> (class, display name); nodes/__init__.py collects these
NODES = {
    "FaceEditDrawLandmarks": (FaceEditDrawLandmarks, "Draw Face Landmarks"),
}
