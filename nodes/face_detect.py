import numpy as np

from lato_core.face.batch import detect_batch, draw_batch
from lato_core.face.image import as_rgb_uint8
from lato_core.face.detect import BACKENDS, ON_NO_FACE, ORDERS, SELECTIONS, DetectOptions

from .common import CATEGORY, LANDMARKS, preview


class FaceEditDetectLandmarks:
    """Find faces and their 68 iBUG landmarks, offline."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Photo(s) to find faces in. Gray and RGBA images are accepted."}),
            "backend": (list(BACKENDS), {"default": "dlib_hog", "tooltip":
                "dlib_hog: fast, frontal faces. dlib_cnn: slower (seconds on CPU), finds small and turned faces. "
                "mediapipe: Apache-2.0 detector and 478-point mesh mapped to 68 points."}),
            "selection": (list(SELECTIONS), {"default": "largest", "tooltip":
                "Which face to keep: the largest, the most confident, the one at 'index', or all of them."}),
            "index": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip":
                "With selection 'index': which face, counted from 0 in the 'order' below."}),
            "order": (list(ORDERS), {"default": "score", "tooltip":
                "How faces are numbered for 'index' and listed for 'all': by confidence, left to right, or by size."}),
            "min_score": ("FLOAT", {"default": 0.3, "min": -2.0, "max": 2.0, "step": 0.05, "tooltip":
                "Drop detections below this confidence (dlib HOG scores run about -1..3, the others 0..1)."}),
            "upsample": ("INT", {"default": 1, "min": 0, "max": 3, "tooltip":
                "dlib only: upsample the detection image this many times to find smaller faces (slower)."}),
            "detect_max_side": ("INT", {"default": 1024, "min": 256, "max": 8192, "step": 64, "tooltip":
                "Detect on a copy no longer than this; landmarks are still fitted at full resolution. Raise it for "
                "very wide or tall photos (e.g. 8000x200), whose reduced copy is too thin to hold a face."}),
        }, "optional": {
            "on_no_face": (list(ON_NO_FACE), {"default": "error", "tooltip":
                "error: stop when an image has no face. pass_through: leave face-less images of the batch out, so "
                "Face Stitch returns them unchanged (the batch still needs one face)."}),
        }}

    DESCRIPTION = 'Finds faces and their 68 iBUG landmarks (dlib HOG/CNN or MediaPipe) and picks which faces go on: the start of every face edit.'
    RETURN_TYPES = (LANDMARKS, "IMAGE", "INT")
    RETURN_NAMES = ("landmarks", "overlay", "face_count")
    OUTPUT_TOOLTIPS = ("68 landmarks per chosen face, tagged with the image they came from.",
                       "The photo with the landmarks drawn.", "How many faces were chosen.")
    FUNCTION = "detect"
    CATEGORY = f"{CATEGORY}/face"

    def detect(self, image, backend, selection, index, order, min_score, upsample, detect_max_side, on_no_face="error"):
        options = DetectOptions(backend, min_score, upsample, detect_max_side)
        rgb = np.stack([as_rgb_uint8(picture) for picture in image])  # converted once, for detection and overlay
        faces = detect_batch(rgb, options, selection, index, order, on_no_face)
        overlay = draw_batch(faces, rgb)
        return {"ui": preview(preview_size(overlay), "landmarks"), "result": (faces, overlay, len(faces))}


def preview_size(images, longest: int = 2048):
    """The on-node preview no larger than `longest` per side (saving a 24 MP PNG takes seconds)."""
    import torch.nn.functional as F

    h, w = images.shape[1:3]
    if max(h, w) <= longest:
        return images
    k = longest / max(h, w)
    return F.interpolate(images.permute(0, 3, 1, 2), size=(max(1, round(h * k)), max(1, round(w * k))),
                         mode="area").permute(0, 2, 3, 1)


# node id -> (class, display name); nodes/__init__.py collects these
NODES = {
    "FaceEditDetectLandmarks": (FaceEditDetectLandmarks, "Detect Face Landmarks (68)"),
}
