"""The predictor front door: instruction + sliders through the chosen mode, and the warp on real targets."""
import numpy as np
import pytest

from lato_core.errors import FaceEditError
from lato_core.face.crop import crop_faces
from lato_core.face.detect import detect_faces
from lato_core.predictor.geometry import estimate_pose
from lato_core.predictor.predict import Controls, predict_target, predict_targets
from lato_core.predictor.vlm import VlmPredictor
from lato_core.predictor.vlm_parse import VlmOutputError
from lato_core.predictor.thin_plate_preview import warp_crop


@pytest.fixture(scope="module")
def crop(astronaut, astronaut_face):
    crops, _, mapped = crop_faces(astronaut, [astronaut_face])
    return crops, mapped[0]


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    from tiny_vlm import build_tiny_vlm
    return VlmPredictor(build_tiny_vlm(tmp_path_factory.mktemp("vlm")))


def _yaw_change(source, target):
    return estimate_pose(target)[0] - estimate_pose(source)[0]


def test_instruction_and_sliders_compose(crop):
    _, face = crop
    from_text, report = predict_target(face, "turn her head 15 degrees left")
    both, _ = predict_target(face, "turn her head 15 degrees left", Controls(yaw=15.0))
    assert report["used"] == "parametric" and report["params"]["yaw"] == 15.0
    assert abs(_yaw_change(face, from_text) - 15) < 3 and abs(_yaw_change(face, both) - 30) < 3
    smile, report = predict_target(face, "", Controls(expressions={"happy": 1.0}))
    assert report["params"]["expressions"] == {"happy": 1.0}
    assert smile.points[54, 0] - smile.points[48, 0] > face.points[54, 0] - face.points[48, 0] + 2  # wider


def test_no_instruction_and_idle_sliders_return_the_source(crop):
    _, face = crop
    same, _ = predict_target(face, "")
    assert np.abs(same.points - face.points).max() < 1.0


def test_vlm_modes(crop, tiny_vlm):
    crops, face = crop
    image = (crops[0].numpy() * 255).astype(np.uint8)
    with pytest.raises(FaceEditError, match="needs a loaded VLM"):
        predict_target(face, "smile", mode="vlm")
    with pytest.raises(FaceEditError, match="needs the face crop image"):
        predict_target(face, "smile", mode="vlm_with_fallback", vlm=tiny_vlm)
    target, report = predict_target(face, "smile", mode="vlm_with_fallback", vlm=None, image=image)
    assert report["used"] == "parametric" and "no VLM" in report["reason"]
    # A random tiny model answers garbage: strict mode says so, fallback mode falls back and says why.
    with pytest.raises(VlmOutputError):
        predict_target(face, "smile", mode="vlm", vlm=tiny_vlm, image=image)
    target, report = predict_target(face, "smile", Controls(yaw=10.0), mode="vlm_with_fallback", vlm=tiny_vlm,
                                    image=image)
    assert report["used"] == "parametric" and report["reason"]
    assert abs(_yaw_change(face, target) - 10) < 3  # sliders still apply on top of the fallback


def test_batch_prediction_keeps_the_face_order(crop):
    crops, face = crop
    other = face.with_points(face.points, image_index=1)
    targets, reports = predict_targets([face, other], "smile", images=np.concatenate([crops.numpy()] * 2))
    assert [t.image_index for t in targets] == [0, 1] and len(reports) == 2
    assert np.allclose(targets[0].points, targets[1].points)


def test_warping_toward_predicted_targets_moves_the_detected_landmarks_there(crop):
    crops, face = crop
    target, _ = predict_target(face, "make her facial expression happy strongly and turn her head 15 degrees left")
    warped = warp_crop(crops[0], face, target)
    found = detect_faces(warped)[0].points
    visible = target.visibility > 0
    to_target = np.linalg.norm(found - target.points, axis=1)[visible].mean()
    to_source = np.linalg.norm(found - face.points, axis=1)[visible].mean()
    assert to_target < 0.6 * to_source, (to_target, to_source)


def test_fold_guard_keeps_a_30_degree_turn_from_smearing(crop):
    from lato_core.metrics.landmarks import measure_landmark_error

    crops, face = crop
    target, _ = predict_target(face, "turn her head 30 degrees left and smile slightly")
    exact = measure_landmark_error(warp_crop(crops[0], face, target, fold_guard=False), target).l1
    smooth = measure_landmark_error(warp_crop(crops[0], face, target), target).l1
    assert smooth < 20 and smooth < 0.3 * exact, (smooth, exact)
