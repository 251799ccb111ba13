"""The landmark type: validation, JSON, and the converters to other ComfyUI landmark types."""
import json

import numpy as np
import pytest

from lato_core.errors import LandmarkFormatError
from lato_core.face.detect import DetectOptions, detect_faces
from lato_core.face.interop import (from_face_landmarks, from_pose_keypoint, mesh478_to_ibug68, to_face_landmarks,
                                    to_pose_keypoint)
from lato_core.face.landmarks import FaceLandmarks, faces_from_json, faces_to_json


def _json_with(points, size=(512, 512)):
    return json.dumps({"faces": [{"points": points, "image_size": list(size)}]})


def test_json_round_trip_keeps_every_field(astronaut_face):
    face = astronaut_face.with_points(astronaut_face.points, visibility=np.r_[np.ones(60), np.zeros(8)], image_index=3)
    back = faces_from_json(faces_to_json([face]))[0]
    assert np.abs(back.points - face.points).max() <= 5e-4  # 3 decimals in the file
    assert back.visibility.tolist() == face.visibility.tolist()
    assert back.image_size == (512, 512) and back.image_index == 3 and back.backend == "dlib_hog"
    assert back.box == pytest.approx(face.box, abs=5e-4)


def test_67_points_are_refused(astronaut_face):
    with pytest.raises(LandmarkFormatError, match="Expected 68 landmark points in iBUG-68 order, got 67"):
        faces_from_json(_json_with(astronaut_face.points[:67].tolist()))


def test_nan_points_are_refused_with_their_index(astronaut_face):
    pts = astronaut_face.points.tolist()
    pts[12][1] = float("nan")
    with pytest.raises(LandmarkFormatError, match=r"points \[12\] are NaN"):
        faces_from_json(_json_with(pts))


def test_out_of_canvas_points_are_refused_or_clamped_or_hidden(astronaut_face):
    pts = astronaut_face.points.copy()
    pts[0] = [-40.0, 100.0]
    pts[16] = [530.0, 100.0]
    text = _json_with(pts.tolist())
    with pytest.raises(LandmarkFormatError, match=r"2 visible landmark point\(s\) lie outside the 512x512 canvas, e.g. point 0"):
        faces_from_json(text)
    clamped = faces_from_json(text, "clamp")[0]
    assert clamped.points[0].tolist() == [-0.5, 100.0] and clamped.points[16].tolist() == [511.5, 100.0]
    assert clamped.visibility.sum() == 68
    hidden = faces_from_json(text, "hide")[0]
    assert hidden.visibility[[0, 16]].tolist() == [0.0, 0.0] and hidden.visibility.sum() == 66


@pytest.mark.parametrize("text, message", [
    ("{not json", "malformed at line 1"),
    ("[]", "holds no face"),
    ('{"faces": [{"points": []}]}', "needs 'points'"),
    ('{"faces": [{"points": [[1, 2]], "image_size": [512, 512]}]}', "got 1"),
    ('{"faces": [{"points": "abc", "image_size": [512, 512]}]}', "must be a list"),
])
def test_malformed_json_names_the_problem(text, message):
    with pytest.raises(LandmarkFormatError, match=message):
        faces_from_json(text)


def test_invisible_points_may_sit_off_canvas(astronaut_face):
    pts = astronaut_face.points.copy()
    pts[0] = [-100.0, 50.0]
    vis = np.ones(68)
    vis[0] = 0
    face = FaceLandmarks(pts, (512, 512), vis)
    assert face.box[0] > 0  # the box ignores hidden points


@pytest.mark.parametrize("normalised", [False, True])
def test_pose_keypoint_round_trip_is_exact(astronaut_face, normalised):
    face = astronaut_face.with_points(astronaut_face.points, visibility=np.r_[np.ones(67), 0.0])
    frames = to_pose_keypoint([face], normalised=normalised)
    assert frames[0]["canvas_width"] == 512 and len(frames[0]["people"][0]["face_keypoints_2d"]) == 70 * 3
    flat = np.asarray(frames[0]["people"][0]["face_keypoints_2d"]).reshape(70, 3)
    assert flat[67].tolist() == [0.0, 0.0, 0.0]  # a missing point is written as OpenPose does
    back = from_pose_keypoint(json.loads(json.dumps(frames)))[0]
    assert np.abs(back.points[:67] - face.points[:67]).max() < 1e-9
    assert back.visibility.tolist() == face.visibility.tolist()


def test_pose_keypoint_from_dwpose_pixels_and_openpose_fractions_agree(astronaut_face):
    pixels = to_pose_keypoint([astronaut_face])
    fractions = to_pose_keypoint([astronaut_face], normalised=True)
    a, b = from_pose_keypoint(pixels)[0], from_pose_keypoint(fractions)[0]
    assert np.abs(a.points - b.points).max() < 1e-9
    with pytest.raises(LandmarkFormatError, match="has 10 points"):
        from_pose_keypoint([{"people": [{"face_keypoints_2d": [1.0] * 30}], "canvas_width": 5, "canvas_height": 5}])


def test_core_face_landmarks_round_trip_is_exact(astronaut):
    face = detect_faces(astronaut[0], DetectOptions("mediapipe"))[0]
    core = to_face_landmarks([face], num_images=1)
    assert core["image_size"] == (512, 512) and core["frames"][0][0]["landmarks_xy"].shape == (478, 2)
    back = from_face_landmarks(core)[0]
    assert np.abs(back.points - face.points).max() < 1e-4  # float32 in the core type
    again = to_face_landmarks([back], num_images=1)
    assert np.array_equal(again["frames"][0][0]["landmarks_xy"], core["frames"][0][0]["landmarks_xy"])
    assert np.abs(mesh478_to_ibug68(back.mesh478) - face.points).max() < 1e-4


def test_core_face_landmarks_need_the_mediapipe_mesh(astronaut_face):
    with pytest.raises(LandmarkFormatError, match="Detect with backend 'mediapipe'"):
        to_face_landmarks([astronaut_face], num_images=1)
