"""Issue 12, VLM replies: the strict parser is linear-time and depth-bounded, refuses duplicate keys, and
checks point order and part shape; every bad reply makes vlm_with_fallback fall back with its reason."""
import itertools
import json
import time

import numpy as np
import pytest

from lato_core.face.landmarks import FaceLandmarks
from lato_core.predictor.face_model import EXPRESSIONS
from lato_core.predictor.geometry import predict_landmarks
from lato_core.predictor.parse import EditParams
from lato_core.predictor.vlm import predict_with_fallback
from lato_core.predictor.vlm_parse import DEFAULT_LIMITS, MAX_REPLY_CHARS, VlmOutputError, parse_vlm_landmarks
from lato_core.predictor.vlm_checks import check_against_source
from tests.test_vlm_parse import FACE, P, groups, moved, reply


def _reversed(a, b):
    return moved(lambda p: p.__setitem__(slice(a, b), p[a:b][::-1].copy()))


def _straight_jaw(p):
    p[0:17] = np.column_stack([np.linspace(p[0, 0], p[16, 0], 17), np.full(17, p[0:17, 1].mean())])


SHUFFLED_MOUTH = moved(lambda p: p.__setitem__(slice(48, 68), p[48 + np.random.default_rng(0).permutation(20)]))
SHUFFLED_UPPER_LIP = moved(lambda p: p.__setitem__([49, 50, 51, 52, 53], p[[52, 49, 53, 50, 51]]))
# (case, reply, reason)
GEOMETRY = [
    ("list_reversed", reply(P[::-1].tolist()), "folded_jaw"),
    ("groups_reversed", reply({k: v[::-1] for k, v in groups(P).items()}), "scale_nose"),
    ("mouth_shuffled", reply(groups(SHUFFLED_MOUTH)), "collapsed_part"),
    ("upper_lip_shuffled", reply(groups(SHUFFLED_UPPER_LIP)), "point_order"),
    ("eye_collapsed_to_a_point", reply(groups(moved(lambda p: p.__setitem__(slice(36, 42), p[36:42].mean(0))))),
     "collapsed_part"),
    ("mouth_collapsed", reply(groups(moved(lambda p: p.__setitem__(slice(48, 68), p[48:68].mean(0))))),
     "collapsed_part"),
    ("straight_horizontal_jaw", reply(groups(moved(_straight_jaw))), "flat_jaw"),
    ("right_eye_reversed", reply(groups(_reversed(36, 42))), "point_order"),
    ("left_eye_reversed", reply(groups(_reversed(42, 48))), "point_order"),
    ("outer_lips_reversed", reply(groups(_reversed(48, 60))), "point_order"),
    ("inner_lips_reversed", reply(groups(_reversed(60, 68))), "point_order"),
    ("brow_reversed", reply(groups(_reversed(17, 22))), "point_order"),
    ("lower_nose_reversed", reply(groups(_reversed(31, 36))), "point_order"),
    ("jaw_reversed", reply(groups(_reversed(0, 17))), "folded_jaw"),
    ("brows_below_eyes", reply(groups(moved(lambda p: p.__setitem__(slice(17, 27), p[17:27] + [0, 60])))),
     "part_layout"),
]
SYNTAX = [
    ("1000_open_brackets", "<answer>" + "[" * 1000, "too_deep"),
    ("100k_open_brackets", "[" * 100_000, "too_deep"),
    ("128k_open_braces", "<answer>" + "{" * 128_000, "too_deep"),
    ("deep_inside_the_answer", reply(groups(P) | {"NOSE": [[[[[[[[[1]]]]]]]]]}), "too_deep"),
    ("duplicate_group", reply('{"EYES": %s, "EYES": %s, "JAW/BROWS": %s, "NOSE": %s, "MOUTH": %s}' % (
        json.dumps(P[36:48].tolist()), json.dumps(P[36:48].tolist()), json.dumps(P[:27].tolist()),
        json.dumps(P[27:36].tolist()), json.dumps(P[48:].tolist()))), "duplicate_key"),
    ("too_long", "x" * (MAX_REPLY_CHARS + 1), "too_long"),
    ("60k_objects_then_cut_off", "<answer>" + "{} " * 60_000 + "{", "malformed_json"),
]


@pytest.mark.parametrize("name, text, reason", GEOMETRY + SYNTAX, ids=[c[0] for c in GEOMETRY + SYNTAX])
def test_garbage_reply_is_rejected_with_its_reason_and_falls_back(name, text, reason):
    start = time.perf_counter()
    with pytest.raises(VlmOutputError) as info:
        parse_vlm_landmarks(text, FACE)
    assert info.value.reason == reason, str(info.value)
    assert time.perf_counter() - start < 0.5  # linear: 128k '{' took 5 s (quadratic) before

    class Replies:  # a VLM that answers `text`
        def generate_text(self, *args):
            return text

    fallback_face = FACE.with_points(FACE.points + 1.0)
    target, report = predict_with_fallback(Replies(), None, "smile", FACE, lambda: fallback_face)
    assert report["used"] == "parametric" and f"({reason})" in report["reason"]
    assert np.array_equal(target.points, fallback_face.points)


def test_parse_cost_grows_linearly():
    def cost(n):
        start = time.perf_counter()
        with pytest.raises(VlmOutputError):
            parse_vlm_landmarks("<answer>" + "{}" * n + "{", FACE)
        return time.perf_counter() - start
    small, large = cost(10_000), cost(80_000)
    assert large < 0.5 and large < 30 * max(small, 1e-3)


def test_a_parser_bug_still_falls_back_with_its_reason(monkeypatch):
    import lato_core.predictor.vlm as vlm

    def broken(*args, **kwargs):
        raise RecursionError("deep")

    monkeypatch.setattr(vlm, "parse_vlm_landmarks", broken)

    class Replies:
        def generate_text(self, *args):
            return "{}"

    _, report = predict_with_fallback(Replies(), None, "smile", FACE, lambda: FACE)
    assert report["used"] == "parametric" and "parser_error" in report["reason"] and "RecursionError" in report["reason"]


POSES = [(y, p, r) for y, p, r in itertools.product([-70, -35, 0, 35, 70], [-25, 0, 25], [-40, 0])
         if not (abs(y) == 70 and p)]  # yaw 70 with a nod is beyond the older scale checks' range


@pytest.mark.parametrize("yaw, pitch, roll", POSES)
def test_every_edit_the_predictor_can_ask_for_passes_the_shape_checks(yaw, pitch, roll):
    """The new checks must not refuse real edits: every expression, mouth wide open or closed, eyes shut."""
    for expression, (mouth, blink) in itertools.product([None, *EXPRESSIONS[1:]], ((1.5, 1), (-1, 0))):
        params = EditParams(yaw=yaw, pitch=pitch, roll=roll, mouth_open=mouth, blink=blink)
        if expression:
            params.expressions[expression], params.intensity = 1.0, 1.5
        target = predict_landmarks(FACE, params)
        try:
            check_against_source(target.points, FACE.points, DEFAULT_LIMITS)
        except VlmOutputError as e:
            assert e.reason in ("scale_iod", "scale_nose"), (expression, mouth, blink, str(e))


def test_a_good_reply_still_parses_exactly():
    face, _ = parse_vlm_landmarks(reply(groups(P)), FACE, smooth=False)
    assert isinstance(face, FaceLandmarks) and np.array_equal(face.points, P)
