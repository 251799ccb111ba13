from lato_core.face.crop import STITCH_MODES, crop_faces, stitch_faces

from .common import CATEGORY, CROP_INFO, LANDMARKS, preview


class FaceEditCrop:
    """Cut a square crop around each face, on the canvas LaTo works on (512 x 512)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The photo(s) the landmarks were found on."}),
            "landmarks": (LANDMARKS, {"tooltip": "Faces to crop, from Detect Face Landmarks."}),
            "size": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 16, "tooltip":
                "Side of the square crop in pixels. LaTo was trained on 512."}),
            "scale": ("FLOAT", {"default": 2.0, "min": 0.5, "max": 6.0, "step": 0.05, "tooltip":
                "Crop side relative to the face (2.0 frames the head like FFHQ; larger shows more hair and shoulders)."}),
            "offset_x": ("FLOAT", {"default": 0.0, "min": -1.0, "max": 1.0, "step": 0.01, "tooltip":
                "Shift the crop sideways, as a fraction of its side."}),
            "offset_y": ("FLOAT", {"default": 0.0, "min": -1.0, "max": 1.0, "step": 0.01, "tooltip":
                "Shift the crop down (positive) or up, as a fraction of its side."}),
            "align_roll": ("BOOLEAN", {"default": False, "tooltip":
                "Rotate the crop so the eyes are level. Off keeps the head's tilt, which pose edits may want."}),
        }}

    DESCRIPTION = 'Cuts an aligned square crop around each face, the 512-px canvas LaTo and CA-Edit work on, and maps the landmarks into it.'
    RETURN_TYPES = ("IMAGE", LANDMARKS, CROP_INFO)
    RETURN_NAMES = ("crops", "crop_landmarks", "crop_info")
    OUTPUT_TOOLTIPS = ("One square crop per face.", "The landmarks in crop pixels.",
                       "How each crop maps back into its photo; feed it to Face Stitch.")
    FUNCTION = "crop"
    CATEGORY = f"{CATEGORY}/face"

    def crop(self, image, landmarks, size, scale, offset_x, offset_y, align_roll):
        crops, transforms, crop_landmarks = crop_faces(image, landmarks, size, scale, offset_x, offset_y, align_roll)
        return {"ui": preview(crops, "face_crop"), "result": (crops, crop_landmarks, transforms)}


class FaceEditStitch:
    """Paste edited face crops back into the full-resolution photo."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The original photo(s) the crops were cut from."}),
            "crops": ("IMAGE", {"tooltip": "Edited crops, in the order Face Crop made them."}),
            "crop_info": (CROP_INFO, {"tooltip": "From the Face Crop node that made the crops."}),
            "feather": ("FLOAT", {"default": 24.0, "min": 0.0, "max": 256.0, "step": 1.0, "tooltip":
                "Width in crop pixels of the soft seam at the crop border (and mask edge)."}),
            "colour_match": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                "Pull the edited crop's colour statistics toward the original's (fixes colour drift at the seam)."}),
            "mode": (list(STITCH_MODES), {"default": "replace", "tooltip":
                "replace: paste the crop. keep_detail: add only what the edit changed, keeping the photo's "
                "finer-than-512 detail; best for local edits, not for head turns."}),
            "antialias": ("BOOLEAN", {"default": False, "tooltip":
                "Low-pass crops that are pasted smaller than they are. Off keeps an unedited crop exact."}),
        }, "optional": {
            "mask": ("MASK", {"tooltip": "Optional crop-space mask (1 = paste) to limit the paste to the edited region."}),
        }}

    DESCRIPTION = "Pastes edited face crops back into the full-resolution photo with a feathered seam (or adds only the edit's change in keep_detail mode)."
    OUTPUT_TOOLTIPS = ('The photo with the edited faces pasted back.',)
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "stitch"
    CATEGORY = f"{CATEGORY}/face"

    def stitch(self, image, crops, crop_info, feather, colour_match, mode, antialias, mask=None):
        return (stitch_faces(image, crops, crop_info, mask, feather, colour_match, mode, antialias),)


# node id -> (class, display name); nodes/__init__.py collects these
NODES = {
    "FaceEditCrop": (FaceEditCrop, "Face Crop (512)"),
    "FaceEditStitch": (FaceEditStitch, "Face Stitch"),
}
