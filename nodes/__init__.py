"""ComfyUI node classes of the pack: thin doors onto lato_core and caedit_core."""
from .face_crop import FaceEditCrop, FaceEditStitch
from .face_detect import FaceEditDetectLandmarks
from .landmark_convert import (FaceEditLandmarksToMediaPipe, FaceEditLandmarksToPoseKeypoint,
                               FaceEditMediaPipeToLandmarks, FaceEditPoseKeypointToLandmarks)
from .landmark_draw import FaceEditDrawLandmarks
from .landmark_io import FaceEditLoadLandmarks, FaceEditSaveLandmarks
from .region_mask import FaceEditRegionMask

NODE_CLASS_MAPPINGS = {
    "FaceEditDetectLandmarks": FaceEditDetectLandmarks,
    "FaceEditCrop": FaceEditCrop,
    "FaceEditStitch": FaceEditStitch,
    "FaceEditDrawLandmarks": FaceEditDrawLandmarks,
    "FaceEditRegionMask": FaceEditRegionMask,
    "FaceEditSaveLandmarks": FaceEditSaveLandmarks,
    "FaceEditLoadLandmarks": FaceEditLoadLandmarks,
    "FaceEditLandmarksToPoseKeypoint": FaceEditLandmarksToPoseKeypoint,
    "FaceEditPoseKeypointToLandmarks": FaceEditPoseKeypointToLandmarks,
    "FaceEditLandmarksToMediaPipe": FaceEditLandmarksToMediaPipe,
    "FaceEditMediaPipeToLandmarks": FaceEditMediaPipeToLandmarks,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "FaceEditDetectLandmarks": "Detect Face Landmarks (68)",
    "FaceEditCrop": "Face Crop (512)",
    "FaceEditStitch": "Face Stitch",
    "FaceEditDrawLandmarks": "Draw Face Landmarks",
    "FaceEditRegionMask": "Face Region Mask",
    "FaceEditSaveLandmarks": "Save Face Landmarks (JSON)",
    "FaceEditLoadLandmarks": "Load Face Landmarks (JSON)",
    "FaceEditLandmarksToPoseKeypoint": "Face Landmarks to POSE_KEYPOINT",
    "FaceEditPoseKeypointToLandmarks": "POSE_KEYPOINT to Face Landmarks",
    "FaceEditLandmarksToMediaPipe": "Face Landmarks to MediaPipe FACE_LANDMARKS",
    "FaceEditMediaPipeToLandmarks": "MediaPipe FACE_LANDMARKS to Face Landmarks",
}
