import os

from lato_core.face.landmarks import faces_from_json, faces_to_json

from .common import CATEGORY, LANDMARKS


class FaceEditSaveLandmarks:
    """Write the landmarks as JSON into ComfyUI's output folder."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "landmarks": (LANDMARKS, {"tooltip": "Landmarks to save."}),
            "filename_prefix": ("STRING", {"default": "face_edit/landmarks", "tooltip":
                "File name prefix inside the output folder; a counter and .json are added."}),
        }}

    DESCRIPTION = 'Writes the landmarks to a JSON file in the output folder (points, visibility, canvas size, box).'
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = f"{CATEGORY}/landmarks"

    def save(self, landmarks, filename_prefix):
        import folder_paths

        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, folder_paths.get_output_directory())
        filename = f"{name}_{counter:05}_.json"
        text = faces_to_json(landmarks)
        with open(os.path.join(folder, filename), "w", encoding="utf-8") as f:
            f.write(text)
        return {"ui": {"landmarks_json": [{"filename": filename, "subfolder": subfolder, "type": "output"}],
                       "text": [f"{len(landmarks)} face(s) -> {filename}"]}}


class FaceEditLoadLandmarks:
    """Landmarks from JSON text (this pack's format, e.g. from Save Face Landmarks, or edited by hand)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "json_text": ("STRING", {"multiline": True, "default": "", "tooltip":
                'JSON: {"faces": [{"points": [[x, y], ... 68 pairs], "image_size": [w, h], "visibility": [...]}]}'}),
            "out_of_canvas": (["error", "clamp", "hide"], {"default": "error", "tooltip":
                "Points outside the image: refuse them, move them onto the edge, or move them and mark them invisible."}),
        }}

    DESCRIPTION = "Reads landmarks from JSON text in the pack's format, every field checked and bounded."
    OUTPUT_TOOLTIPS = ('The landmarks, validated.',)
    RETURN_TYPES = (LANDMARKS,)
    RETURN_NAMES = ("landmarks",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/landmarks"

    def load(self, json_text, out_of_canvas):
        return (faces_from_json(json_text, out_of_canvas),)


# node id -> (class, display name); nodes/__init__.py collects these
NODES = {
    "FaceEditSaveLandmarks": (FaceEditSaveLandmarks, "Save Face Landmarks (JSON)"),
    "FaceEditLoadLandmarks": (FaceEditLoadLandmarks, "Load Face Landmarks (JSON)"),
}
