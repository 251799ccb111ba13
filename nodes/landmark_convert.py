from lato_core.face.interop import from_face_landmarks, from_pose_keypoint, to_face_landmarks, to_pose_keypoint

from .common import CATEGORY, LANDMARKS


class FaceEditLandmarksToPoseKeypoint:
    """68 landmarks as POSE_KEYPOINT (OpenPose JSON: face_keypoints_2d, 68 + 2 eye points)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "landmarks": (LANDMARKS, {"tooltip": "Landmarks to convert."}),
            "normalised": ("BOOLEAN", {"default": False, "tooltip":
                "Write 0..1 coordinates (OpenPose style) instead of pixels (DWPose style)."}),
        }}

    DESCRIPTION = 'Converts 68 landmarks to OpenPose POSE_KEYPOINT (the DWPose face layout of comfyui_controlnet_aux).'
    OUTPUT_TOOLTIPS = ('OpenPose JSON frames.',)
    RETURN_TYPES = ("POSE_KEYPOINT",)
    FUNCTION = "convert"
    CATEGORY = f"{CATEGORY}/landmarks"

    def convert(self, landmarks, normalised):
        return (to_pose_keypoint(landmarks, normalised=normalised),)


class FaceEditPoseKeypointToLandmarks:
    """Faces from POSE_KEYPOINT (DWPose / OpenPose face_keypoints_2d); missing points become invisible."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pose_keypoint": ("POSE_KEYPOINT", {"tooltip": "From a DWPose or OpenPose estimator."})}}

    DESCRIPTION = "Converts the face of OpenPose POSE_KEYPOINT (DWPose, 68 points) to this pack's landmarks."
    OUTPUT_TOOLTIPS = ('The face landmarks.',)
    RETURN_TYPES = (LANDMARKS,)
    RETURN_NAMES = ("landmarks",)
    FUNCTION = "convert"
    CATEGORY = f"{CATEGORY}/landmarks"

    def convert(self, pose_keypoint):
        return (from_pose_keypoint(pose_keypoint),)


class FaceEditLandmarksToMediaPipe:
    """The 478-point mesh behind mediapipe-backend landmarks, as core FACE_LANDMARKS."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "landmarks": (LANDMARKS, {"tooltip": "Landmarks detected with backend 'mediapipe' (they keep the mesh)."}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096, "tooltip": "Number of images in the batch."}),
        }}

    DESCRIPTION = "Converts to ComfyUI core's FACE_LANDMARKS (MediaPipe 478-point mesh; needs the mediapipe detector backend)."
    OUTPUT_TOOLTIPS = ('Core FACE_LANDMARKS.',)
    RETURN_TYPES = ("FACE_LANDMARKS",)
    FUNCTION = "convert"
    CATEGORY = f"{CATEGORY}/landmarks"

    def convert(self, landmarks, batch_size):
        count = max(batch_size, max((f.image_index for f in landmarks), default=0) + 1)
        return (to_face_landmarks(landmarks, count),)


class FaceEditMediaPipeToLandmarks:
    """68 iBUG points from core FACE_LANDMARKS (MediaPipe 478-point mesh)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"face_landmarks": ("FACE_LANDMARKS", {"tooltip": "From ComfyUI's MediaPipe face landmarker."})}}

    DESCRIPTION = "Converts core's FACE_LANDMARKS (MediaPipe 478) to the iBUG 68 points this pack uses."
    OUTPUT_TOOLTIPS = ('The 68-point landmarks.',)
    RETURN_TYPES = (LANDMARKS,)
    RETURN_NAMES = ("landmarks",)
    FUNCTION = "convert"
    CATEGORY = f"{CATEGORY}/landmarks"

    def convert(self, face_landmarks):
        return (from_face_landmarks(face_landmarks),)


# node id -> (class, display name); nodes/__init__.py collects these
NODES = {
    "FaceEditLandmarksToPoseKeypoint": (FaceEditLandmarksToPoseKeypoint, "Face Landmarks to POSE_KEYPOINT"),
    "FaceEditPoseKeypointToLandmarks": (FaceEditPoseKeypointToLandmarks, "POSE_KEYPOINT to Face Landmarks"),
    "FaceEditLandmarksToMediaPipe": (FaceEditLandmarksToMediaPipe, "Face Landmarks to MediaPipe FACE_LANDMARKS"),
    "FaceEditMediaPipeToLandmarks": (FaceEditMediaPipeToLandmarks, "MediaPipe FACE_LANDMARKS to Face Landmarks"),
}
