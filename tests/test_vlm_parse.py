"""The strict VLM reply parser: a corpus of malformed replies (each with its reason) and valid variants."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lato_core.errors import LandmarkFormatError
from lato_core.face.landmarks import FaceLandmarks
from lato_core.predictor.vlm_parse import DEFAULT_LIMITS, SMOOTHED_CONTOURS, VlmOutputError, parse_vlm_landmarks
from lato_core.predictor.vlm_prompt import answer_json
from tests.tiny_vlm import sample_face

FACE = sample_face()                  # crop-like, inter-ocular distance ~122 px
SMALL = sample_face(scale=1.5)        # inter-ocular distance ~65 px, room to move around
P = np.rint(FACE.points)
KEYS = ("JAW/BROWS", "NOSE", "EYES", "MOUTH")
SLICES = dict(zip(KEYS, ((0, 27), (27, 36), (36, 48), (48, 68))))


def groups(points, keys=KEYS) -> dict:
    return {k: np.asarray(points)[slice(*SLICES[k])].tolist() for k in keys}


def reply(body, think: str = "Frontal face, neutral. Raise the mouth corners.") -> str:
    """A well-formed reply around body (a dict/list dumped as JSON, or ready text)."""
    text = body if isinstance(body, str) else json.dumps(body)
    return f"<think>{think}</think>\n<answer>\n```json\n{text}\n```\n</answer>"


def moved(fn) -> np.ndarray:
    pts = P.copy()
    fn(pts)
    return pts


def _scale_about(pts, sl, factor, centre):
    pts[sl] = centre + factor * (pts[sl] - centre)


eye_mid = P[36:48].mean(axis=0)
mouth_drop = P[48:68].mean(axis=0) - eye_mid
swapped_eyes = np.concatenate([P[:36], P[42:48], P[36:42], P[48:]])
folded = moved(lambda p: p.__setitem__([4, 7], p[[7, 4]]))
truncated = answer_json(P)[:300]
valid_text = answer_json(P)
nose_tip = f"[{P[30, 0]:.0f}, {P[30, 1]:.0f}]"
assert nose_tip in valid_text
half_nose = groups(P) | {"NOSE": P[27:35].tolist()}

CORPUS = [
    ("empty", "", "no_json", FACE),
    ("prose_only", "I am sorry, I cannot locate a face in this picture.", "no_json", FACE),
    ("cut_off_in_think", "<think>The head is turned slightly to the left and the mouth", "no_json", FACE),
    ("answer_without_json", "<think>x</think><answer>The face smiles.</answer>", "answer_without_json", FACE),
    ("json_only_in_think", f"<think>draft:\n```json\n{valid_text}\n```</think><answer>as above</answer>",
     "answer_without_json", FACE),
    ("json_after_answer", f"<answer></answer>\n```json\n{valid_text}\n```", "answer_without_json", FACE),
    ("truncated_fence", f"<think>ok</think><answer>\n```json\n{truncated}", "malformed_json", FACE),
    ("truncated_closed_answer", f"<answer>```json\n{truncated}```</answer>", "malformed_json", FACE),
    ("truncated_after_valid_unfenced", f"<answer>{valid_text} then {truncated}", "malformed_json", FACE),
    ("single_quotes", reply(valid_text.replace('"', "'")), "malformed_json", FACE),
    ("comments", reply(valid_text.replace('"NOSE"', '// nose\n"NOSE"')), "malformed_json", FACE),
    ("flat_67", reply({"points": P[:67].tolist()}), "point_count", FACE),
    ("flat_69", reply(P.tolist() + [[1, 2]]), "point_count", FACE),
    ("list_of_groups", reply([v for v in groups(P).values()]), "point_count", FACE),
    ("nose_8", reply(half_nose), "group_count", FACE),
    ("mouth_21", reply(groups(P) | {"MOUTH": P[48:68].tolist() + [[230, 150]]}), "group_count", FACE),
    ("missing_eyes", reply(groups(P, ("JAW/BROWS", "NOSE", "MOUTH"))), "missing_group", FACE),
    ("unknown_key", reply(groups(P) | {"TEETH": []}), "bad_structure", FACE),
    ("duplicate_jaw", reply(groups(P) | {"JAW": P[:17].tolist()}), "bad_structure", FACE),
    ("group_not_list", reply(groups(P) | {"NOSE": {"27": [1, 2]}}), "bad_structure", FACE),
    ("top_level_string", reply('"hello"'), "bad_structure", FACE),
    ("point_as_string", reply(valid_text.replace(nose_tip, '"%s"' % nose_tip[1:-1])), "bad_point", FACE),
    ("point_triple", reply(groups(P) | {"NOSE": [[1, 2, 3]] + P[28:36].tolist()}), "bad_point", FACE),
    ("point_as_object", reply(groups(P) | {"NOSE": [{"x": 1, "y": 2}] + P[28:36].tolist()}), "bad_point", FACE),
    ("point_bool", reply(groups(P) | {"NOSE": [[True, 2]] + P[28:36].tolist()}), "bad_point", FACE),
    ("nan", reply(groups(P) | {"NOSE": [[float("nan"), 2.0]] + P[28:36].tolist()}), "non_finite", FACE),
    ("infinity", reply(valid_text.replace(nose_tip, "[1e999, 1]")), "non_finite", FACE),
    ("huge_integer", reply(valid_text.replace(nose_tip, f"[{10**400}, 1]")), "non_finite", FACE),
    ("wrong_scale_2048", reply(groups(P * 4)), "out_of_range", FACE),
    ("normalised_0_1", reply(groups(P / 511)), "scale_iod", FACE),
    ("iod_3x", reply(groups(moved(lambda p: _scale_about(p, slice(36, 48), 3.0, eye_mid)))), "scale_iod", FACE),
    ("nose_2x", reply(groups(moved(lambda p: _scale_about(p, slice(27, 36), 2.0, P[27])))), "scale_nose", FACE),
    ("face_half_size", reply(groups(moved(lambda p: _scale_about(p, slice(0, 68), 0.5, P.mean(0))))),
     "scale_nose", FACE),
    ("eyes_swapped", reply(groups(swapped_eyes)), "eyes_swapped", FACE),
    ("mirrored", reply(groups(np.column_stack([511 - P[:, 0], P[:, 1]]))), "eyes_swapped", FACE),
    ("eyes_below_mouth", reply(groups(moved(lambda p: p[36:48].__iadd__(1.6 * mouth_drop)))),
     "eyes_below_mouth", FACE),
    ("folded_jaw", reply(groups(folded)), "folded_jaw", FACE),
    ("jaw_reordered", reply(groups(moved(lambda p: p.__setitem__(slice(7, 11), p[[9, 7, 10, 8]])))),
     "folded_jaw", FACE),
    ("jaw_small_loop", reply(groups(moved(lambda p: p.__setitem__(slice(8, 11), p[7] + [[8, 10], [2, 10], [6, 0]])))),
     "folded_jaw", FACE),
    ("displaced", reply(groups(np.rint(SMALL.points) + [110, 60])), "displaced", SMALL),
    ("several_blocks_last_broken", f"<answer>```json\n{valid_text}\n```\n```json\n{json.dumps(half_nose)}\n```"
     "</answer>", "group_count", FACE),
]


def test_corpus_is_large_and_reasons_are_distinct():
    assert len(CORPUS) >= 25
    assert len({reason for *_, reason, _ in CORPUS}) >= 15


@pytest.mark.parametrize("name,text,reason,source", CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_reply_is_rejected_with_its_reason(name, text, reason, source):
    with pytest.raises(VlmOutputError) as info:
        parse_vlm_landmarks(text, source)
    assert info.value.reason == reason, str(info.value)
    assert f"({reason})" in str(info.value)
    assert isinstance(info.value, LandmarkFormatError)


def test_small_jaw_loop_is_caught_as_a_crossing():
    with pytest.raises(VlmOutputError, match="crosses itself"):
        parse_vlm_landmarks(dict((c[0], c[1]) for c in CORPUS)["jaw_small_loop"], FACE)


def test_cut_off_reasoning_says_so():
    with pytest.raises(VlmOutputError, match="max_new_tokens"):
        parse_vlm_landmarks("<think>the head turns", FACE)


def test_canonical_reply_parses_within_the_smoothing_cap():
    face, notes = parse_vlm_landmarks(reply(valid_text), FACE)
    assert isinstance(face, FaceLandmarks) and face.backend == "vlm" and face.image_size == (512, 512)
    assert np.abs(face.points - P).max() <= DEFAULT_LIMITS.max_smooth_px + 1e-9
    assert any("smoothed" in n for n in notes)
    exact, _ = parse_vlm_landmarks(reply(valid_text), FACE, smooth=False)
    np.testing.assert_array_equal(exact.points, P)


def test_noisy_source_parses_to_the_noisy_input_and_smoothing_stays_bounded():
    rng = np.random.default_rng(0)
    noisy = np.rint(FACE.points + rng.normal(0, 2.0, (68, 2)))
    raw, _ = parse_vlm_landmarks(reply(answer_json(noisy)), FACE, smooth=False)
    assert np.abs(raw.points - noisy).max() <= 1.0
    smooth, _ = parse_vlm_landmarks(reply(answer_json(noisy)), FACE)
    assert np.abs(smooth.points - noisy).max() <= DEFAULT_LIMITS.max_smooth_px + 1e-9
    contour = np.concatenate([np.arange(s + 1, e - 1) for s, e in SMOOTHED_CONTOURS])
    err = lambda pts: np.linalg.norm(pts[contour] - FACE.points[contour], axis=1).mean()  # noqa: E731
    assert err(smooth.points) < err(noisy)          # smoothing removes some of the jitter
    fixed = np.setdiff1d(np.arange(68), contour)    # contour ends, eyes and lips are untouched
    np.testing.assert_array_equal(smooth.points[fixed], noisy[fixed])


@pytest.mark.parametrize("body", [
    {"jaw_and_brows": P[:27].tolist(), "mouth": P[48:].tolist(), "eyes": P[36:48].tolist(), "nose": P[27:36].tolist()},
    {"Jaw": P[:17].tolist(), "Eyebrows": P[17:27].tolist(), "Nose": P[27:36].tolist(), "Eyes": P[36:48].tolist(),
     "Lips": P[48:].tolist()},
    {"landmarks": P.tolist()},
    P.tolist(),
], ids=["renamed_reordered", "split_jaw_brows", "flat_points_key", "bare_list"])
def test_accepted_layouts(body):
    face, _ = parse_vlm_landmarks(reply(body), FACE, smooth=False)
    np.testing.assert_array_equal(face.points, P)


@pytest.mark.parametrize("text,note", [
    (f"<think>x</think>\n```json\n{valid_text}\n```", "no <answer>"),
    (f"<ANSWER>Final landmarks: {valid_text} done.</ANSWER>", None),
    (f"<answer>{json.dumps(P.tolist())}</answer>", None),
    (reply(valid_text.replace("]]", "],]").replace("]\n}", "],\n}")), "trailing commas"),
    (reply(groups(P + 0.25)), "non-integer"),
    (f"<answer>```json\n{json.dumps(half_nose)}\n```\n```json\n{valid_text}\n```</answer>", None),
    (f"<think>{json.dumps(groups(P * 4))}</think><answer>```\n{valid_text}\n```</answer>", None),
], ids=["no_answer_tag", "unfenced_in_prose", "unfenced_bare_list", "trailing_commas", "floats", "last_block_wins",
        "draft_in_think_ignored"])
def test_tolerated_variants(text, note):
    face, notes = parse_vlm_landmarks(text, FACE, smooth=False)
    assert np.abs(face.points - P).max() <= 0.25 + 1e-9
    if note:
        assert any(note in n for n in notes), notes


def test_points_slightly_off_canvas_are_clamped_hidden_and_noted():
    pts = P.copy()
    pts[19] = [pts[19, 0], -6]
    pts[0] = [-3, pts[0, 1]]
    face, notes = parse_vlm_landmarks(reply(groups(pts)), FACE, smooth=False)
    assert face.points[19, 1] == 0 and face.points[0, 0] == 0
    assert face.visibility[[0, 19]].tolist() == [0, 0] and face.visibility.sum() == 66
    assert any("clamped" in n and "[0, 19]" in n for n in notes)


@pytest.mark.parametrize("squash", [(0.45, 1.0), (1.0, 0.7), (1.5, 1.0)], ids=["strong_turn", "nod", "turn_back"])
def test_pose_changes_within_tolerance_are_accepted(squash):
    centre = P.mean(axis=0)
    pts = np.rint(centre + (P - centre) * np.array(squash))
    face, _ = parse_vlm_landmarks(reply(groups(pts)), FACE, smooth=False)
    np.testing.assert_array_equal(face.points, pts)


@pytest.mark.parametrize("size", [(1024, 1024), (640, 480)])
def test_source_of_another_size_is_mapped_back(size):
    w, h = size
    canvas = FACE.points
    source = FaceLandmarks((canvas + 0.5) * np.array([w / 512, h / 512]) - 0.5, image_size=size)
    face, _ = parse_vlm_landmarks(reply(answer_json(canvas)), source, smooth=False)
    assert face.image_size == size
    assert np.abs(face.points - source.points).max() <= 0.5 * max(w, h) / 512 + 1e-9


def test_original_face_is_not_modified():
    before = FACE.points.copy()
    parse_vlm_landmarks(reply(valid_text), FACE)
    np.testing.assert_array_equal(FACE.points, before)
