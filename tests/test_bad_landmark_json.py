"""Issue 12, landmark JSON: every field bounded; bad input is a LandmarkFormatError naming the field, the
allowed range and the fix, in bounded time and memory (Draw included)."""
import json
import time

import numpy as np
import pytest
import torch

from lato_core.errors import FaceEditError, LandmarkFormatError
from lato_core.face.batch import draw_batch, mask_batch
from lato_core.face.landmarks import LIMITS, faces_from_json
from tests.tiny_vlm import sample_face

POINTS = np.rint(sample_face().points).tolist()


def face_json(**fields) -> str:
    face = {"points": POINTS, "image_size": [512, 512]} | fields
    return json.dumps({"faces": [face]})


# (case, JSON text, words the message must hold: the problem, the allowed range or the fix)
CORPUS = [
    ("image_size Infinity", face_json(image_size=["INF", 512]).replace('"INF"', "Infinity"),
     ["image_size width", "1 to 16384"]),
    ("image_size NaN", face_json(image_size=[512, "N"]).replace('"N"', "NaN"), ["image_size height", "1 to 16384"]),
    ("image_size 1e6 x 1e6", face_json(image_size=[1_000_000, 1_000_000]), ["image_size width", "1 to 16384"]),
    ("image_size 16384 x 16384", face_json(image_size=[16384, 16384]), ["268 MP", "limit is 100 MP"]),
    ("image_size fractional", face_json(image_size=[512.5, 512]), ["whole number"]),
    ("image_size string", face_json(image_size="512x512"), ["[width, height]"]),
    ("image_size three", face_json(image_size=[512, 512, 3]), ["[width, height]"]),
    ("score string", face_json(score="high"), ["'score'", "number"]),
    ("score huge int", face_json(score=10 ** 40), ["'score'", "-1e+06 to 1e+06"]),
    ("box strings", face_json(box=["a", 1, 2, 3]), ["'box[0]'", "number"]),
    ("box three", face_json(box=[1, 2, 3]), ["[x0, y0, x1, y1]", "leave it out"]),
    ("box reversed", face_json(box=[300, 300, 100, 100]), ["x1 < x0"]),
    ("visibility strings", face_json(visibility=["1"] * 68), ["'visibility[0]'", "0 to 1"]),
    ("visibility 67", face_json(visibility=[1] * 67), ["needs 68 numbers", "67 entries", "leave 'visibility' out"]),
    ("visibility 2", face_json(visibility=[1] * 67 + [2]), ["visibility[67]", "0 to 1"]),
    ("visibility dict", face_json(visibility={"0": 1}), ["needs 68 numbers"]),
    ("image_index string", face_json(image_index="0"), ["'image_index'", "whole number from 0 to 1023"]),
    ("image_index negative", face_json(image_index=-1), ["'image_index' is -1", "0 to 1023"]),
    ("image_index 100000", face_json(image_index=100000), ["'image_index' is 100000", "0 to 1023"]),
    ("image_index float", face_json(image_index=1.5), ["whole number"]),
    ("backend list", face_json(backend=[1]), ["'backend'", "string"]),
    ("format other", face_json(format="mediapipe478"), ["'format'", "ibug68"]),
    ("point string", face_json(points=[["1", 2]] + POINTS[1:]), ["Point 0", "pair of numbers"]),
    ("point huge int", face_json(points=[[10 ** 400, 2]] + POINTS[1:]), ["too large for a number"]),
    ("4400-digit int", face_json(score=0).replace('"score": 0', '"score": ' + "9" * 4400), ["plain numbers"]),
    ("point bool", face_json(points=[[True, 2]] + POINTS[1:]), ["Point 0"]),
    ("100k brackets", "[" * 100_000, ["deeper than 16 levels"]),
    ("100k braces", "{" * 100_000, ["deeper than 16 levels"]),
    ("deep inside a face", face_json(extra=[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]), ["deeper than 16"]),
    ("too long", " " * (LIMITS["json_chars"] + 1), ["limit is 2,000,000"]),
    ("too many faces", json.dumps({"faces": [{"points": POINTS, "image_size": [512, 512]}] * 257}),
     ["257 faces", "limit is 256"]),
    ("empty", "", ["malformed"]),
    ("no faces", '{"faces": []}', ["holds no face"]),
    ("top-level number", "42", ["holds no face"]),
]


def test_corpus_is_large():
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("name, text, words", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_landmark_json_is_refused_with_the_field_and_range(name, text, words):
    start = time.perf_counter()
    with pytest.raises(LandmarkFormatError) as info:
        faces_from_json(text)
    assert time.perf_counter() - start < 1.0
    for word in words:
        assert word in str(info.value), str(info.value)


def test_every_policy_refuses_a_67_entry_visibility():
    for policy in ("error", "clamp", "hide"):
        with pytest.raises(LandmarkFormatError, match="needs 68 numbers"):
            faces_from_json(face_json(visibility=[1] * 67), policy)


def test_fields_at_their_bounds_are_accepted():
    face = faces_from_json(face_json(image_size=[10000, 10000], image_index=1023, score=-1e6,
                                     visibility=[0.5] * 68, box=[0, 0, 511, 511]))[0]
    assert face.image_size == (10000, 10000) and face.image_index == 1023 and face.score == -1e6
    assert face.visibility.tolist() == [0.5] * 68


def test_draw_refuses_an_index_past_the_batch_instead_of_dropping_it():
    faces = faces_from_json(face_json(image_index=2))
    with pytest.raises(FaceEditError, match=r"refer to image\(s\) \[2\], but the batch has 1 image"):
        draw_batch(faces, torch.zeros(1, 512, 512, 3))
    with pytest.raises(FaceEditError, match=r"\[2\], but the batch has 1"):
        mask_batch(faces, "mouth", num_images=1)


def test_draw_on_black_is_bounded_in_memory():
    faces = faces_from_json(face_json(image_size=[10000, 10000]))
    start = time.perf_counter()
    with pytest.raises(FaceEditError, match="needs 100 MP; the limit is 64 MP. Connect the image"):
        draw_batch(faces)
    far = faces_from_json(face_json(image_index=1023))
    with pytest.raises(FaceEditError, match="1024 canvas"):
        draw_batch(far)
    assert time.perf_counter() - start < 1.0
    ok = draw_batch(faces_from_json(face_json(image_index=1)))
    assert ok.shape == (2, 512, 512, 3) and ok[0].max() == 0 and ok[1].max() > 0


@pytest.mark.parametrize("frame, words", [
    ({"canvas_width": "wide", "canvas_height": 512, "people": []}, ["image_size width", "number"]),
    ({"canvas_width": 1e400, "canvas_height": 512, "people": []}, ["image_size width", "1 to 16384"]),
    ({"canvas_width": 512, "canvas_height": 512, "people": [{"face_keypoints_2d": ["a"] * 204}]}, ["flat list"]),
    ({"canvas_width": 512, "canvas_height": 512, "people": [{"face_keypoints_2d": [float("inf")] * 204}]},
     ["NaN or infinite"]),
], ids=["string_width", "infinite_width", "string_points", "infinite_points"])
def test_bad_pose_keypoint_is_refused_with_its_field(frame, words):
    from lato_core.face.interop import from_pose_keypoint
    with pytest.raises(LandmarkFormatError) as info:
        from_pose_keypoint([frame])
    for word in words:
        assert word in str(info.value), str(info.value)
