"""Issue 12, instructions, and issue 14's neutral target: numbers are read whole and bounded, out-of-range and
contradictory requests warn with what was applied, blends keep each part's signature, 'neutral' is absolute."""
import numpy as np
import pytest

from lato_core.errors import FaceEditError
from lato_core.predictor.geometry import LIMITS, estimate_pose, predict_landmarks
from lato_core.predictor.parse import MAX_INSTRUCTION_CHARS, EditParams, InstructionError, parse_instruction
from lato_core.predictor.predict import Controls, predict_target
from tests.tiny_vlm import sample_face

FACE = sample_face()
IOD = FACE.interocular()

# (instruction, axis, applied angle, words the warning must hold)
OUT_OF_RANGE = [
    ("turn her head 720 degrees left", "yaw", 90, ["720 degrees of yaw", "90 was applied"]),
    ("turn her head 400 degrees right", "yaw", -90, ["-400 degrees of yaw", "-90 was applied"]),
    ("turn -1e308 degrees left", "yaw", 90, ["1e+308 degrees of yaw", "90 was applied"]),
    ("look up 200 degrees", "pitch", 70, ["200 degrees of pitch", "70 was applied"]),
    ("tilt her head 95 degrees to the left", "roll", 60, ["95 degrees of roll", "60 was applied"]),
    ("yaw 720", "yaw", 90, ["720 degrees of yaw"]),
    ("pitch -1.5e2", "pitch", -70, ["-150 degrees of pitch"]),
]


@pytest.mark.parametrize("text, axis, applied, words", OUT_OF_RANGE, ids=[c[0] for c in OUT_OF_RANGE])
def test_out_of_range_angles_are_capped_with_a_warning_saying_what_was_applied(text, axis, applied, words):
    params = parse_instruction(text)
    assert getattr(params, axis) == applied
    assert any(all(w in warning for w in words) for warning in params.warnings), params.warnings


@pytest.mark.parametrize("text", ["turn her head 1e400 degrees left", "yaw 1e999", "turn left 9e9999 degrees"])
def test_numbers_beyond_float_range_are_refused_not_read_as_400(text):
    with pytest.raises(InstructionError, match="too large to read.*at most 90") as info:
        parse_instruction(text)
    assert isinstance(info.value, FaceEditError)


def test_ansi_colour_codes_are_not_read_as_31_degrees():
    params = parse_instruction("turn her head \x1b[31mleft\x1b[0m")
    assert params.yaw == 30  # the plain default, not 31
    assert any("colour codes" in w for w in params.warnings)
    assert parse_instruction("\x1b[1;32msmile\x1b[0m").expressions["happy"] == 1


def test_an_instruction_past_the_length_limit_is_refused_with_the_limit():
    with pytest.raises(InstructionError, match="limit is 2,000"):
        parse_instruction("smile " * (MAX_INSTRUCTION_CHARS // 6 + 1))
    assert parse_instruction("smile " * (MAX_INSTRUCTION_CHARS // 6 - 1)).expressions["happy"] == 1


def test_nod_with_a_direction_follows_the_direction_without_a_conflict():
    params = parse_instruction("nod upward thirty degrees")
    assert params.pitch == 30 and params.frontal == () and params.warnings == []
    assert parse_instruction("nod").pitch == -15
    assert parse_instruction("nod down 20 degrees").pitch == -20


def test_the_report_warns_when_the_source_pose_plus_the_turn_passes_the_limit():
    turned = predict_landmarks(FACE, EditParams(yaw=60))
    warnings = []
    predict_landmarks(turned, EditParams(yaw=60), warnings=warnings)
    assert any("90 degree limit" in w and "target yaw is 90" in w for w in warnings), warnings
    target, report = predict_target(FACE, "turn her head 720 degrees left")
    assert report["params"]["yaw"] == 90 and any("90 was applied" in w for w in report["warnings"])
    assert estimate_pose(target)[0] > 75


def _inner_brow_height(p):
    return -p[[21, 22], 1].mean()


def _brow_gap(p):
    return p[22, 0] - p[21, 0]


def _corner_height(p):
    return -p[[48, 54], 1].mean()


def test_frown_lowers_and_draws_the_brows_together():
    out = predict_landmarks(FACE, parse_instruction("frown")).points
    assert _inner_brow_height(out) < _inner_brow_height(FACE.points) - 0.05 * IOD
    assert _brow_gap(out) < _brow_gap(FACE.points) - 0.05 * IOD
    assert _corner_height(out) < _corner_height(FACE.points) - 0.03 * IOD  # and the mouth corners go down
    slight = predict_landmarks(FACE, parse_instruction("frown slightly")).points
    assert _inner_brow_height(out) < _inner_brow_height(slight) < _inner_brow_height(FACE.points)


def test_happy_and_surprised_keeps_the_smiles_raised_corners_and_the_jaw_drop():
    happy = predict_landmarks(FACE, parse_instruction("happy")).points
    surprised = predict_landmarks(FACE, parse_instruction("surprised")).points
    both = predict_landmarks(FACE, parse_instruction("happy and surprised")).points
    src = FACE.points
    assert _corner_height(surprised) < _corner_height(src)          # the jaw drop alone pulls the corners down
    lift_alone = _corner_height(happy) - _corner_height(src)
    assert _corner_height(both) - _corner_height(src) >= 0.5 * lift_alone - 0.01 * IOD  # half the smile, kept
    assert both[57, 1] - src[57, 1] > 0.5 * (surprised[57, 1] - src[57, 1]) - 1e-6      # the jaw still drops
    assert -both[24, 1] > -src[24, 1] + 0.03 * IOD                                       # brows still up


def test_a_laugh_with_an_open_mouth_keeps_its_corners_raised():
    out = predict_landmarks(FACE, parse_instruction("laugh with her mouth open")).points
    assert _corner_height(out) > _corner_height(FACE.points) + 0.08 * IOD


@pytest.mark.parametrize("text, words", [("smile and frown", ["'happy'", "'sad'", "mouth corners", "blended"]),
                                         ("happy and sad", ["mouth corners"]),
                                         ("sad and angry", ["'sad'", "'angry'", "inner brows"])])
def test_contradictory_expressions_warn_that_they_were_blended(text, words):
    _, report = predict_target(FACE, text)
    assert any(all(w in warning for w in words) for warning in report["warnings"]), report["warnings"]


def test_a_single_expression_gives_no_blend_warning():
    for text in ("smile", "frown", "surprised", "happy and surprised"):
        _, report = predict_target(FACE, text)
        assert not any("blended" in w for w in report["warnings"]), (text, report["warnings"])


# ---- the neutral target (issue 14): absolute, not "no change"

def _expressive():
    return predict_landmarks(FACE, EditParams(expressions={"happy": 1.0} | {}, intensity=1.5, mouth_open=1.0,
                                              brow_raise=0.6))


RIGID = [36, 39, 42, 45, 27, 28, 29, 30, 0, 1, 2, 14, 15, 16]
MOUTH = list(range(48, 68))


def test_neutral_takes_a_smiling_open_mouth_to_the_neutral_mouth_and_keeps_identity():
    neutral_of_source, _ = predict_target(FACE, "neutral")
    smiling = _expressive()
    assert np.abs(smiling.points[MOUTH] - neutral_of_source.points[MOUTH]).max() > 0.2 * IOD
    back, report = predict_target(smiling, "make her facial expression neutral")
    assert report["params"]["expressions"] == {"neutral": 1.0}
    # the same neutral face whatever expression it starts from
    assert np.abs(back.points[MOUTH] - neutral_of_source.points[MOUTH]).max() < 0.03 * IOD
    assert np.abs(back.points[17:27] - neutral_of_source.points[17:27]).max() < 0.03 * IOD
    # the rigid identity (eye corners, nose bridge, upper jaw) is not touched
    assert np.abs(back.points[RIGID] - smiling.points[RIGID]).max() < 1e-6
    gap = lambda f: f.points[66, 1] - f.points[62, 1]  # noqa: E731
    assert gap(back) < 0.1 * IOD and gap(back) < gap(FACE) < gap(smiling)  # a relaxed mouth: lips nearer than hers


def test_the_neutral_slider_interpolates():
    smiling = _expressive()
    full, _ = predict_target(smiling, "", Controls(expressions={"neutral": 1.0}))
    half, _ = predict_target(smiling, "", Controls(expressions={"neutral": 0.5}))
    none, _ = predict_target(smiling, "", Controls(expressions={"neutral": 0.0}))
    np.testing.assert_allclose(half.points, (full.points + smiling.points) / 2, atol=1e-6)
    np.testing.assert_allclose(none.points, smiling.points, atol=1e-6)
    assert np.abs(full.points - smiling.points).max() > 0.2 * IOD


def test_neutral_then_smile_smiles_from_the_neutral_face():
    smiling = _expressive()
    reset_smile, _ = predict_target(smiling, "neutral and smile")
    fresh_smile, _ = predict_target(predict_target(smiling, "neutral")[0], "smile")
    np.testing.assert_allclose(reset_smile.points, fresh_smile.points, atol=0.02 * IOD)


def test_stop_smiling_removes_the_smile():
    smiling = predict_landmarks(FACE, parse_instruction("smile strongly"))
    stopped, report = predict_target(smiling, "stop smiling")
    assert _corner_height(stopped.points) < _corner_height(smiling.points) - 0.05 * IOD
    assert report["params"]["expressions"] == {"neutral": 1.0}


def test_pose_limits_are_the_ones_the_readme_states():
    assert LIMITS == {"yaw": 90.0, "pitch": 70.0, "roll": 60.0}
