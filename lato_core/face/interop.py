"""Converters between FaceLandmarks and the landmark types other ComfyUI nodes pass around.

POSE_KEYPOINT (comfyui_controlnet_aux, OpenPose JSON): a list with one dict per image,
{"people": [{"face_keypoints_2d": [x, y, c] * 70, ...}], "canvas_width": W, "canvas_height": H}.
DWPose writes pixels, OpenPose writes 0..1; readers tell them apart by magnitude, as controlnet_aux does.
The 70 face points are iBUG-68 plus two eye points; a missing point is (0, 0, 0).

FACE_LANDMARKS (ComfyUI core MediaPipe face landmarker): {"frames": [[face, ...] per image],
"image_size": (H, W), ...}, each face holding "landmarks_xy" (478, 2) in pixels, "bbox_xyxy" and "score".
"""
from __future__ import annotations

import numpy as np

from ..errors import LandmarkFormatError
from .landmarks import LIMITS, NUM_POINTS, FaceLandmarks, checked_image_size

# MediaPipe FaceMesh index for each iBUG-68 point (a widely shared table; the jaw is the loosest part).
MEDIAPIPE_TO_IBUG68 = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87,
)
# MediaPipe pixel coordinates are edge-based (x * W); ours put pixel centres on integers.
MEDIAPIPE_PIXEL_SHIFT = 0.5


def mesh478_to_ibug68(mesh: np.ndarray) -> np.ndarray:
    return np.asarray(mesh, dtype=np.float64)[list(MEDIAPIPE_TO_IBUG68), :2]


def _normalised(values: np.ndarray) -> bool:
    return bool(np.all(np.abs(values) <= 1.0))


def to_pose_keypoint(faces: list[FaceLandmarks], num_images: int | None = None, normalised: bool = False) -> list[dict]:
    """One OpenPose dict per image; the two extra face points are the eye centres."""
    if not faces and not num_images:
        return []
    count = num_images if num_images is not None else max(f.image_index for f in faces) + 1
    frames = []
    for index in range(count):
        mine = [f for f in faces if f.image_index == index]
        size = mine[0].image_size if mine else (faces[0].image_size if faces else (0, 0))
        people = []
        for face in mine:
            right, left = face.eye_centres()
            pts = np.vstack([face.points, right, left])
            conf = np.concatenate([face.visibility, [1.0, 1.0]])
            if normalised:
                pts = pts / np.array(face.image_size, dtype=np.float64)
            flat = np.column_stack([pts, conf]).reshape(-1)
            flat[np.repeat(conf <= 0, 3)] = 0.0
            people.append({"face_keypoints_2d": flat.tolist(), "pose_keypoints_2d": None,
                           "hand_left_keypoints_2d": None, "hand_right_keypoints_2d": None})
        frames.append({"people": people, "canvas_width": int(size[0]), "canvas_height": int(size[1])})
    return frames


def from_pose_keypoint(frames) -> list[FaceLandmarks]:
    """Faces from POSE_KEYPOINT; points with confidence 0 become invisible."""
    if isinstance(frames, dict):
        frames = [frames]
    if not isinstance(frames, list):
        raise LandmarkFormatError(f"POSE_KEYPOINT must be a list of OpenPose dicts, got {type(frames).__name__}.")
    if len(frames) > LIMITS["image_index"] + 1:
        raise LandmarkFormatError(f"POSE_KEYPOINT holds {len(frames)} frames; at most {LIMITS['image_index'] + 1}.")
    faces = []
    for index, frame in enumerate(frames):
        try:
            size = checked_image_size([frame["canvas_width"], frame["canvas_height"]])
            people = frame.get("people") or []
        except (KeyError, TypeError, AttributeError):
            raise LandmarkFormatError(f"POSE_KEYPOINT frame {index} lacks 'people', 'canvas_width' or 'canvas_height'.") from None
        for person in people:
            raw = person.get("face_keypoints_2d")
            if not raw:
                continue
            try:
                arr = np.asarray(raw, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                raise LandmarkFormatError(f"face_keypoints_2d in frame {index} must be a flat list of numbers "
                                          "x, y, confidence.") from None
            if not np.isfinite(arr).all():
                raise LandmarkFormatError(f"face_keypoints_2d in frame {index} holds NaN or infinite numbers.")
            if arr.size % 3 or arr.size // 3 < NUM_POINTS:
                raise LandmarkFormatError(
                    f"face_keypoints_2d in frame {index} has {arr.size // 3} points; need 68 (or 70 from DWPose).")
            arr = arr.reshape(-1, 3)[:NUM_POINTS]
            pts, conf = arr[:, :2].copy(), arr[:, 2]
            present = conf > 0
            if present.any() and _normalised(pts[present]):
                pts *= np.array(size, dtype=np.float64)
            visibility = present.astype(np.float64)
            if not present.any():
                continue
            pts[~present] = pts[present].mean(axis=0)  # parked inside the face, flagged invisible
            faces.append(FaceLandmarks(points=pts, image_size=size, visibility=visibility,
                                       backend="pose_keypoint", image_index=index))
    return faces


def to_face_landmarks(faces: list[FaceLandmarks], num_images: int, connection_sets: dict | None = None) -> dict:
    """The core FACE_LANDMARKS dict; needs the 478-point mesh that only the MediaPipe backend keeps."""
    missing = [f for f in faces if f.mesh478 is None]
    if missing:
        raise LandmarkFormatError(
            "ComfyUI's FACE_LANDMARKS holds the 478-point MediaPipe mesh, and these landmarks have only 68 points "
            f"(backend '{missing[0].backend}'). Detect with backend 'mediapipe' to convert them.")
    frames: list[list[dict]] = [[] for _ in range(num_images)]
    for face in faces:
        mesh = np.asarray(face.mesh478, dtype=np.float32)
        xy = mesh[:, :2] + MEDIAPIPE_PIXEL_SHIFT
        frames[face.image_index].append({
            "landmarks_xy": xy,
            "bbox_xyxy": np.array([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()], dtype=np.float32),
            "score": float(face.score),
        })
    width, height = faces[0].image_size if faces else (0, 0)
    return {"frames": frames, "image_size": (height, width), "connection_sets": connection_sets or {}}


def from_face_landmarks(data) -> list[FaceLandmarks]:
    try:
        frames = data["frames"]
        height, width = data["image_size"]
    except (KeyError, TypeError, ValueError):
        raise LandmarkFormatError("FACE_LANDMARKS must be a dict with 'frames' and 'image_size' (H, W).") from None
    faces = []
    for index, frame in enumerate(frames):
        for face in frame:
            xy = np.asarray(face["landmarks_xy"], dtype=np.float64)
            if xy.shape[0] < 478:
                raise LandmarkFormatError(f"FACE_LANDMARKS face in frame {index} has {xy.shape[0]} points; need 478.")
            mesh = xy[:, :2] - MEDIAPIPE_PIXEL_SHIFT
            faces.append(FaceLandmarks(points=mesh478_to_ibug68(mesh).clip([-0.5, -0.5], [width - 0.5, height - 0.5]),
                                       image_size=(int(width), int(height)), score=float(face.get("score", 1.0)),
                                       backend="face_landmarks", image_index=index, mesh478=mesh))
    return faces
