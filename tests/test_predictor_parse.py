"""English instructions -> EditParams: LaTo's template, free phrasing, composites and conflicts.

Convention under test: positive yaw = toward the subject's OWN left; positive pitch = chin up; positive
roll = crown toward the subject's own left shoulder; 30 degrees is the base unit.
"""
import pytest

from lato_core.predictor.face_model import EXPRESSIONS
from lato_core.predictor.parse import EditParams, parse_instruction

# (instruction, expected). Unlisted angles and sliders must be 0, unlisted expressions absent, no warning
# unless "warn" is True. "expr" maps expression -> blend weight; "i" is the intensity.
TABLE = [
    # LaTo's training template, his and her, every expression and intensity level
    ("Make his facial expression happy slightly and turn his head 30 degrees left", dict(expr={"happy": 1}, i=0.5, yaw=30)),
    ("Make her facial expression happy slightly and turn her head 30 degrees left", dict(expr={"happy": 1}, i=0.5, yaw=30)),
    ("Make her facial expression sad normally and turn her head 30 degrees right", dict(expr={"sad": 1}, i=1.0, yaw=-30)),
    ("Make his facial expression angry strongly and turn his head 15 degrees up", dict(expr={"angry": 1}, i=1.5, pitch=15)),
    ("Make her facial expression surprised strongly and turn her head 45\u00b0 left", dict(expr={"surprised": 1}, i=1.5, yaw=45)),
    ("Make his facial expression fearful slightly and turn his head 30\u00b0 down", dict(expr={"fearful": 1}, i=0.5, pitch=-30)),
    ("Make her facial expression disgusted normally and turn her head 60 degrees right", dict(expr={"disgusted": 1}, i=1.0, yaw=-60)),
    ("Make his facial expression neutral normally and turn his head 0 degrees", dict(expr={"neutral": 1}, i=1.0)),
    ("Make her facial expression happy normally and turn her head 30 degrees left and 15 degrees up", dict(expr={"happy": 1}, yaw=30, pitch=15)),
    ("Make his facial expression sad slightly and turn his head left 30 degrees", dict(expr={"sad": 1}, i=0.5, yaw=30)),
    ("Make her facial expression happy strongly and turn her head 30 degrees to the right", dict(expr={"happy": 1}, i=1.5, yaw=-30)),
    # expression synonyms and intensity words
    ("make him smile gently", dict(expr={"happy": 1}, i=0.5)),
    ("Smile", dict(expr={"happy": 1}, i=1.0)),
    ("give her a big grin", dict(expr={"happy": 1}, i=1.5)),
    ("make her laugh", dict(expr={"happy": 1}, i=1.5)),
    ("strongly happy", dict(expr={"happy": 1}, i=1.5)),
    ("make her smile, a lot", dict(expr={"happy": 1}, i=1.5)),
    ("70% happy", dict(expr={"happy": 1}, i=0.7)),
    ("she looks very sad", dict(expr={"sad": 1}, i=1.5)),
    ("make him frown", dict(expr={"sad": 1}, i=1.0, brow_raise=-1.0)),
    ("make her cry", dict(expr={"sad": 1}, i=1.5)),
    ("look a little disappointed", dict(expr={"sad": 1}, i=0.25)),
    ("make him furious", dict(expr={"angry": 1}, i=1.5)),
    ("scowling", dict(expr={"angry": 1}, i=1.0)),
    ("slightly annoyed", dict(expr={"angry": 1}, i=0.25)),
    ("make her look shocked", dict(expr={"surprised": 1}, i=1.5)),
    ("astonished", dict(expr={"surprised": 1}, i=1.0)),
    ("make him look scared", dict(expr={"fearful": 1}, i=1.0)),
    ("terrified", dict(expr={"fearful": 1}, i=1.5)),
    ("disgusted", dict(expr={"disgusted": 1}, i=1.0)),
    ("he looks grossed out", dict(expr={"disgusted": 1}, i=1.0)),
    ("keep a poker face", dict(expr={"neutral": 1})),
    ("expressionless", dict(expr={"neutral": 1})),
    ("stop smiling", dict(expr={"neutral": 1}, warn=True)),
    ("she should look happy, not sad", dict(expr={"happy": 1}, i=1.0, warn=True)),
    ("make his face look happier", dict(expr={"happy": 1}, i=1.0)),
    # composite expressions blend (weights proportional to intensity, summing to 1)
    ("happy and surprised", dict(expr={"happy": 0.5, "surprised": 0.5}, i=1.0)),
    ("make her look happy but also a little surprised", dict(expr={"happy": 2 / 3, "surprised": 1 / 3}, i=0.75)),
    ("sad, angry", dict(expr={"sad": 0.5, "angry": 0.5}, i=1.0)),
    ("fearful and strongly surprised", dict(expr={"fearful": 0.4, "surprised": 0.6}, i=1.25)),
    # yaw in words and degrees; whose left
    ("turn her head left", dict(yaw=30)),
    ("turn his head slightly to the right", dict(yaw=-15)),
    ("turn her head a little to the left", dict(yaw=15)),
    ("turn her head to the left a lot", dict(yaw=45)),
    ("look far to the right", dict(yaw=-45)),
    ("rotate her head 30\u00b0 left", dict(yaw=30)),
    ("turn the subject's head 45\u00b0 to the left", dict(yaw=45)),
    ("turn his head to his left", dict(yaw=30)),
    ("her head turned thirty degrees to the left", dict(yaw=30)),
    ("turn her head to her right by fifteen degrees", dict(yaw=-15)),
    ("turn her head forty-five degrees to the left", dict(yaw=45)),
    ("turn to the viewer's left", dict(yaw=-30)),
    ("turn her head to the left as seen from the camera", dict(yaw=-30)),
    ("turn to camera right", dict(yaw=30)),
    ("glance right", dict(yaw=-30)),
    ("turn his head left into profile", dict(yaw=90)),
    ("three-quarter view to the right", dict(yaw=-45)),
    ("show her profile", dict(yaw=90, warn=True)),
    # pitch
    ("look up", dict(pitch=30)),
    ("look slightly down", dict(pitch=-15)),
    ("raise his chin", dict(pitch=30)),
    ("lower her head a bit", dict(pitch=-15)),
    ("tilt his head back", dict(pitch=30)),
    ("nod", dict(pitch=-15)),
    ("look up 20 degrees", dict(pitch=20)),
    # roll
    ("tilt her head to the left", dict(roll=30)),
    ("tilt his head slightly to his right", dict(roll=-15)),
    ("lean her head toward her left shoulder", dict(roll=30)),
    ("rotate the head clockwise by 10 degrees", dict(roll=10)),
    ("tilt head 20\u00b0 counterclockwise", dict(roll=-20)),
    ("yaw 20, pitch -10, roll 5", dict(yaw=20, pitch=-10, roll=5)),
    # compositions of expression and pose
    ("look up and to the left", dict(yaw=30, pitch=30)),
    ("turn left and look down slightly", dict(yaw=30, pitch=-15)),
    ("smile and turn his head 45 degrees to the right", dict(expr={"happy": 1}, yaw=-45)),
    ("turn her head 30 degrees left and make her look surprised", dict(expr={"surprised": 1}, yaw=30)),
    ("tilt her head to the left and turn right slightly", dict(roll=30, yaw=-15)),
    ("look straight at the camera", dict(frontal=("yaw", "pitch"))),
    ("face the camera and smile", dict(frontal=("yaw", "pitch"), expr={"happy": 1})),
    ("straighten his head", dict(frontal=("roll",))),
    # conflicts resolve toward frontal with a warning
    ("turn left and right", dict(frontal=("yaw",), warn=True)),
    ("look up and down", dict(frontal=("pitch",), warn=True)),
    ("turn his head 30 degrees left, then 30 degrees right", dict(frontal=("yaw",), warn=True)),
    ("tilt her head left and right", dict(frontal=("roll",), warn=True)),
    # mouth, eyes, brows
    ("open her mouth", dict(mouth_open=1.0)),
    ("open his mouth slightly", dict(mouth_open=0.5)),
    ("close her eyes", dict(blink=1.0)),
    ("blink", dict(blink=1.0)),
    ("squint", dict(blink=0.5)),
    ("open her eyes wide", dict(blink=-1.0)),
    ("raise his eyebrows", dict(brow_raise=1.0)),
    ("furrow her brows", dict(brow_raise=-1.0)),
    ("wide-eyed and open-mouthed", dict(blink=-1.0, mouth_open=1.0)),
    ("smile with closed eyes", dict(expr={"happy": 1}, blink=1.0)),
    ("surprised with raised eyebrows and an open mouth", dict(expr={"surprised": 1}, brow_raise=1.0, mouth_open=1.0)),
    # nothing to do
    ("make it look nicer", dict(warn=True)),
    ("", dict(warn=True)),
    ("rotate his head 30 degrees", dict(warn=True)),
]


def test_the_table_is_large_enough():
    assert len(TABLE) >= 60
    assert sum("facial expression" in text for text, _ in TABLE) >= 10


@pytest.mark.parametrize("text, want", TABLE, ids=[t or "<empty>" for t, _ in TABLE])
def test_phrasing_maps_to_parameters(text, want):
    p = parse_instruction(text)
    for axis in ("yaw", "pitch", "roll"):
        assert getattr(p, axis) == pytest.approx(want.get(axis, 0.0), abs=1e-9), axis
    for slider in ("mouth_open", "blink", "brow_raise"):
        assert getattr(p, slider) == pytest.approx(want.get(slider, 0.0), abs=1e-9), slider
    weights = {e: w for e, w in p.expressions.items() if w}
    assert weights == pytest.approx(want.get("expr", {}), abs=1e-9)
    if weights:
        assert sum(weights.values()) == pytest.approx(1.0)
    if "i" in want:
        assert p.intensity == pytest.approx(want["i"], abs=1e-9)
    assert p.frontal == want.get("frontal", ())
    assert bool(p.warnings) == want.get("warn", False), p.warnings


def test_expression_dict_always_holds_the_seven_expressions():
    assert set(parse_instruction("smile").expressions) == set(EXPRESSIONS)
    assert len(EXPRESSIONS) == 7


def test_whose_left_convention_is_the_subjects_own():
    # "left" alone, "his left" and "the viewer's right" all mean the same turn, with positive yaw
    assert parse_instruction("turn left").yaw == parse_instruction("turn to his left").yaw == 30
    assert parse_instruction("turn to the viewer's right").yaw == 30
    assert parse_instruction("turn right").yaw == -30


def test_conflict_warning_says_frontal():
    p = parse_instruction("turn left and right")
    assert p.yaw == 0 and "frontal" in p.warnings[0]


def test_expression_amounts_scale_weights_by_intensity():
    amounts = parse_instruction("happy and surprised strongly").expression_amounts()
    assert amounts == pytest.approx({"happy": 0.5, "surprised": 0.75})


def test_explicit_controls_compose_with_the_instruction():
    p = parse_instruction("smile slightly and turn left").with_controls(
        yaw=10, pitch=-5, expressions={"surprised": 0.4}, mouth_open=0.3, blink=-0.2, brow_raise=0.5)
    assert (p.yaw, p.pitch, p.roll) == (40, -5, 0)
    assert p.expression_amounts() == pytest.approx({"happy": 0.5, "surprised": 0.4})
    assert (p.mouth_open, p.blink, p.brow_raise) == (0.3, -0.2, 0.5)
    with pytest.raises(ValueError, match="Unknown expression"):
        EditParams().with_controls(expressions={"smug": 1})


def test_default_params_are_a_no_op():
    p = EditParams()
    assert (p.yaw, p.pitch, p.roll, p.mouth_open, p.blink, p.brow_raise) == (0, 0, 0, 0, 0, 0)
    assert p.expression_amounts() == {} and p.frontal == ()
