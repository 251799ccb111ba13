"""Edit metrics with numbers: SSIM against skimage, landmark error, dlib/ArcFace identity, Eq. 7, the node."""
import json
import sys
import types

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from skimage.transform import rotate

from lato_core.errors import FaceEditError, MissingBackendError
from lato_core.face.crop import crop_faces
from lato_core.face.detect import detect_faces
from lato_core.metrics import (actual_amplitude, dlib_similarity, expected_amplitude, identity_distance, landmark_error,
                               measure_edit, measure_landmark_error, rectified_identity, render_report, ssim)
from lato_core.metrics.identity import ARCFACE_TEMPLATE, ArcFaceModel, five_points, similarity_transform
from lato_core.predictor.predict import predict_target
from lato_core.predictor.thin_plate_preview import warp_crop


@pytest.fixture(scope="module")
def crop(astronaut, astronaut_face):
    crops, _, mapped = crop_faces(astronaut, [astronaut_face])
    return (crops[0].numpy() * 255 + 0.5).astype(np.uint8), mapped[0]


@pytest.mark.parametrize("noise", [3.0, 25.0, 70.0])
def test_ssim_matches_skimage(astronaut_rgb, noise):
    noisy = astronaut_rgb + np.random.default_rng(0).normal(0, noise, astronaut_rgb.shape)
    other = np.clip(noisy, 0, 255).astype(np.uint8)
    ours = ssim(astronaut_rgb, other)
    theirs = structural_similarity(astronaut_rgb / 255.0, other / 255.0, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    assert abs(ours - theirs) < 1e-6
    assert ssim(astronaut_rgb, astronaut_rgb) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(FaceEditError):
        ssim(astronaut_rgb, other[:-1])


def test_landmark_error_hand_worked(astronaut_face):
    face = astronaut_face
    moved = face.with_points(face.points + [3.0, -4.0], box=face.box)
    err = landmark_error(moved, face)  # 512 x 512 photo: pixels are canvas pixels
    assert err.l1 == pytest.approx(7.0) and err.euclidean == pytest.approx(5.0) and err.points == 68
    hidden = np.ones(68)
    hidden[:10] = 0
    far = face.points.copy()
    far[:10] += 100.0  # only hidden points move far: they do not count
    err = landmark_error(face.with_points(far, visibility=hidden), face)
    assert err.l1 == pytest.approx(0.0) and err.points == 58
    big = face.with_points(face.points * 2, image_size=(1024, 1024))
    shifted = big.with_points(big.points + [6.0, 0.0])
    assert landmark_error(shifted, big).l1 == pytest.approx(3.0)  # rescaled to the 512 canvas


def test_unedited_crop_against_its_own_landmarks(crop):
    image, mapped = crop
    own = detect_faces(image)[0]
    assert measure_landmark_error(image, own).l1 < 1.0  # its own detected landmarks
    # The photo's landmarks carried into the crop: the detector's resampling noise floor, ~2 px here.
    assert measure_landmark_error(image, mapped).l1 < 3.0


def test_identity_distance(astronaut_rgb, hopper_rgb):
    assert identity_distance(astronaut_rgb, astronaut_rgb) == 0.0
    rotated = (rotate(astronaut_rgb / 255.0, 5, mode="edge") * 255 + 0.5).astype(np.uint8)
    turned = identity_distance(astronaut_rgb, rotated)
    assert 0.0 < turned < 0.6
    assert identity_distance(astronaut_rgb, hopper_rgb) > 0.6 > turned  # two people
    assert [dlib_similarity(d) for d in (0.0, 0.6, 1.5)] == pytest.approx([1.0, 0.5, 0.0])


def test_eq7_hand_worked():
    near = {"abs": 1e-5}  # eps = 1e-6 in the denominator
    assert rectified_identity(0.8, 0.4, 0.3) == pytest.approx(0.7375, **near)  # 0.8 - (0.1 / 0.4)^2
    assert rectified_identity(0.8, 0.4, 0.3, eps=0.1) == pytest.approx(0.76)   # 0.8 - (0.1 / 0.5)^2
    assert rectified_identity(0.9, 0.2, 0.3) == pytest.approx(0.65, **near)    # overshoot: (0.1 / 0.2)^2 = 0.25
    assert rectified_identity(0.9, 0.3, 0.3) == pytest.approx(0.9)             # amplitude as asked: no penalty
    assert rectified_identity(0.95, 0.2, 0.0) == 0.0                           # copied source: 0.95 - 1 -> 0
    assert rectified_identity(0.7, 0.0, 0.0) == pytest.approx(0.7)             # nothing asked, nothing done
    assert actual_amplitude(0.75) == pytest.approx(0.25)


def test_expected_amplitude_hand_worked():
    assert expected_amplitude({}) == 0.0
    assert expected_amplitude({"yaw": 15.0}) == pytest.approx(0.6 * (1 - np.exp(-1.7)))   # 0.49039
    params = {"yaw": -30.0, "expressions": {"happy": 1.0}, "intensity": 1.0}
    assert expected_amplitude(params, ceiling=0.5) == pytest.approx(0.459494, abs=1e-6)  # u = 1.7 * 2^0.4 + 0.27


def test_measure_warp_edit_and_copy(crop):
    image, face = crop
    target, report = predict_target(face, "turn her head 15 degrees left and smile slightly")
    edit = (warp_crop(torch.from_numpy(image).float() / 255, face, target).numpy() * 255 + 0.5).astype(np.uint8)
    m, detected = measure_edit(image, edit, target, face, report["params"])
    assert detected is not None and m["landmark_error"] < 12.0 and m["same_person"]
    assert m["ssim"] == pytest.approx(ssim(image, edit)) and m["identity_distance"] < 0.45
    assert abs(m["expected_amplitude"] - m["actual_amplitude"]) < 0.3 * m["expected_amplitude"]  # calibration
    assert m["rectified_identity"] > m["identity_similarity"] - 0.1
    copied, _ = measure_edit(image, image, target, face, report["params"])  # asked to turn, did nothing
    assert copied["ssim"] == pytest.approx(1.0) and copied["rectified_identity"] == 0.0
    picture = render_report(image, edit, m, target, detected)
    assert picture.shape[1] == 1024 and picture.shape[0] > 512 and picture[520:].std() > 10  # text drawn


def test_arcface_onnx(tmp_path, crop, monkeypatch):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(588, 32)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["input.1"], ["p"], kernel_shape=[8, 8], strides=[8, 8]),
         helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["embedding"])],
        "tiny_arcface", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["n", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 32])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "arcface.onnx"))
    image, face = crop
    arc = ArcFaceModel(tmp_path / "arcface.onnx")
    assert arc.size == 112 and arc.cosine(image, image, face, face) == pytest.approx(1.0, abs=1e-6)
    aligned = arc.aligned(image, face)
    assert aligned.shape == (1, 3, 112, 112)
    m, _ = measure_edit(image, image, face, face, {}, arcface=arc)  # the edit's face is re-detected: ~2 px apart
    assert 0.99 < m["arcface_cosine"] <= 1.0 + 1e-9 and m["identity_source"] == "arcface cosine"
    assert m["identity_similarity"] == m["arcface_cosine"]
    with pytest.raises(FaceEditError, match="not found"):
        ArcFaceModel(tmp_path / "missing.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingBackendError, match="pip install onnxruntime"):
        ArcFaceModel(tmp_path / "arcface.onnx")


def test_similarity_transform_recovers_a_known_one(astronaut_face):
    src = five_points(astronaut_face)
    angle, scale, shift = np.radians(12.0), 0.4, np.array([5.0, -3.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = similarity_transform(src, src @ rot.T + shift)
    assert np.allclose(matrix, np.column_stack([rot, shift]), atol=1e-9)
    assert similarity_transform(src, ARCFACE_TEMPLATE).shape == (2, 3)


def test_edit_report_node(tmp_path, monkeypatch, crop):
    monkeypatch.setitem(sys.modules, "folder_paths", types.SimpleNamespace(get_temp_directory=lambda: str(tmp_path)))
    from nodes.edit_report import FaceEditReport

    image, face = crop
    target, report = predict_target(face, "make her smile slightly")
    edit = warp_crop(torch.from_numpy(image).float() / 255, face, target)
    source = torch.from_numpy(image).float()[None] / 255
    out = FaceEditReport().measure(source, edit[None], [target], "dlib_hog", [face], json.dumps([report]))
    picture, text = out["result"]
    metrics = json.loads(text)[0]
    assert picture.shape[0] == 1 and picture.shape[2] == 1024 and len(out["ui"]["images"]) == 1
    assert metrics["amplitude_from"] == "predictor params" and metrics["landmark_error"] < 6.0
    assert metrics["ssim"] == pytest.approx(ssim(source[0], edit), abs=1e-3)  # the node measures the float crops
    without, _ = FaceEditReport().measure(source, edit[None], [target], "dlib_hog")["result"], None
    assert json.loads(without[1])[0]["amplitude_from"] == "pose change of the landmarks"
    with pytest.raises(FaceEditError, match="not JSON"):
        FaceEditReport().measure(source, edit[None], [target], "dlib_hog", None, "{oops")
