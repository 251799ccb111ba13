"""Example workflow: portrait -> landmarks -> crop -> draw -> region mask -> stitch."""

SAMPLE_IMAGE = "face_edit_portrait.jpg"

LANDMARKS_CROP_STITCH = [
    {"id": 1, "type": "LoadImage", "pos": [0, 0], "size": [300, 360], "widgets": {"image": SAMPLE_IMAGE}},
    {"id": 2, "type": "FaceEditDetectLandmarks", "pos": [340, 0], "size": [320, 420], "links": {"image": (1, 0)}},
    {"id": 3, "type": "FaceEditCrop", "pos": [700, 0], "size": [300, 260], "links": {"image": (1, 0), "landmarks": (2, 0)}},
    {"id": 4, "type": "FaceEditDrawLandmarks", "pos": [1040, 0], "size": [300, 200],
     "widgets": {"numbers": True}, "links": {"landmarks": (3, 1), "image": (3, 0)}},
    {"id": 5, "type": "FaceEditRegionMask", "pos": [1040, 260], "size": [320, 380],
     "widgets": {"regions": "face_oval", "grow": 8, "feather": 12.0}, "links": {"landmarks": (3, 1), "image": (3, 0)}},
    {"id": 6, "type": "FaceEditStitch", "pos": [1400, 0], "size": [320, 300],
     "links": {"image": (1, 0), "crops": (4, 0), "crop_info": (3, 2), "mask": (5, 0)}},
    {"id": 7, "type": "SaveImage", "pos": [1760, 0], "size": [360, 420], "title": "Stitched photo",
     "widgets": {"filename_prefix": "face_edit/stitched"}, "links": {"images": (6, 0)}},
    {"id": 8, "type": "SaveImage", "pos": [1400, 360], "size": [320, 380], "title": "Crop with landmarks",
     "widgets": {"filename_prefix": "face_edit/crop_landmarks"}, "links": {"images": (4, 0)}},
    {"id": 9, "type": "FaceEditSaveLandmarks", "pos": [700, 320], "size": [300, 100],
     "widgets": {"filename_prefix": "face_edit/landmarks"}, "links": {"landmarks": (2, 0)}},
]

WORKFLOWS = {
    "face_landmarks_crop_stitch.json": ("Portrait -> landmarks -> crop -> draw -> region mask -> stitch", LANDMARKS_CROP_STITCH),
}
