"""The Landmark Editor's stored hand moves: parsing, applying, and the node's refusals (no browser needed)."""
import numpy as np
import pytest
import torch

from lato_core.errors import FaceEditError, LandmarkFormatError
from lato_core.predictor.geometry import synthetic_face
from lato_core.predictor.point_edits import apply_point_edits, edits_to_json, parse_point_edits
from nodes.landmark_editor import FaceEditLandmarkEditor


@pytest.fixture
def faces():
    return [synthetic_face(centre=(200, 260)), synthetic_face(yaw=20, centre=(300, 250))]


def offsets_at(index, dx, dy):
    out = np.zeros((68, 2))
    out[index] = (dx, dy)
    return out


def test_edits_move_only_their_points_of_their_face(faces):
    edits = parse_point_edits(edits_to_json({1: offsets_at(48, 7.25, -3.5)}))
    out = apply_point_edits(faces, edits)
    assert out[0] is faces[0]
    np.testing.assert_allclose(out[1].points - faces[1].points, offsets_at(48, 7.25, -3.5), atol=1e-12)
    assert out[1].image_size == faces[1].image_size and out[1].image_index == faces[1].image_index


def test_empty_edits_and_edits_for_missing_faces_change_nothing(faces):
    for text in ("", "{}", '{"version": 1, "faces": {}}', edits_to_json({5: offsets_at(0, 3, 3)})):
        assert all(a is b for a, b in zip(apply_point_edits(faces, parse_point_edits(text)), faces))


def test_a_point_dragged_past_the_edge_stops_on_it(faces):
    out = apply_point_edits(faces, {0: offsets_at(8, 0, 10_000)})[0]
    assert out.points[8, 1] == pytest.approx(faces[0].height - 0.5)
    assert out.visibility[8] == 1


@pytest.mark.parametrize("text, what", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"version": 2, "faces": {}}', "version 2"),
    ('{"faces": [[0, 0]]}', "'faces' must map"),
    ('{"faces": {"first": []}}', "face number"),
    ('{"faces": {"0": [[0, 0]]}}', "68 \\[dx, dy\\] pairs"),
    ('{"faces": {"0": [' + ",".join(["[0, 0]"] * 67 + ["[NaN, 0]"]) + "]}}", "finite"),
    ('{"faces": {"0": [' + ",".join(["[0, 0]"] * 67 + ["[1e9, 0]"]) + "]}}", "within"),
    ('{"faces": {"0": [' + ",".join(["[0, 0]"] * 67 + ["[true, 0]"]) + "]}}", "finite"),
    ("[" * 100_000, "not valid JSON"),
    ('{"faces": {"\u00b2": []}}', "face number"),
])
def test_bad_edits_are_refused_with_a_way_out(text, what):
    with pytest.raises(LandmarkFormatError, match=what) as e:
        parse_point_edits(text)
    assert "Reset" in str(e.value)


def test_node_refuses_target_start_without_targets_and_photo_landmarks(faces):
    crops = torch.zeros(2, 512, 512, 3)
    node = FaceEditLandmarkEditor()
    with pytest.raises(FaceEditError, match="connect the Landmark Predictor"):
        node.edit(crops, faces, "target", "{}")
    with pytest.raises(FaceEditError, match="1 face\\(s\\) but landmarks has 2"):
        node.edit(crops, faces, "target", "{}", target_landmarks=faces[:1])
    with pytest.raises(FaceEditError, match="crop_landmarks"):
        node.edit(torch.zeros(2, 256, 256, 3), faces, "detection", "{}")


@pytest.mark.comfy
def test_editor_starts_from_the_predictors_target_in_a_real_comfyui(comfy, astronaut_rgb):
    from PIL import Image

    Image.fromarray(astronaut_rgb).save(comfy.base / "input" / "point_edits_astronaut.png")
    sliders = dict.fromkeys(["yaw", "pitch", "roll", "happy", "sad", "angry", "surprised", "fearful", "disgusted",
                             "mouth_open", "blink", "brow_raise"], 0.0)
    save = lambda name, source: {"class_type": "FaceEditSaveLandmarks",
                                 "inputs": {"landmarks": [source, 0], "filename_prefix": f"point_edits/{name}"}}
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "point_edits_astronaut.png"}},
        "2": {"class_type": "FaceEditDetectLandmarks", "inputs": {
            "image": ["1", 0], "backend": "dlib_hog", "selection": "largest", "index": 0, "order": "score",
            "min_score": 0.3, "upsample": 1, "detect_max_side": 1024}},
        "3": {"class_type": "FaceEditCrop", "inputs": {"image": ["1", 0], "landmarks": ["2", 0], "size": 512,
                                                        "scale": 2.0, "offset_x": 0.0, "offset_y": 0.0, "align_roll": False}},
        "4": {"class_type": "FaceEditLandmarkPredictor", "inputs": {
            "landmarks": ["3", 1], "instruction": "turn her head 20 degrees left", "mode": "parametric",
            "keep_centre": False, **sliders}},
        "5": {"class_type": "FaceEditLandmarkEditor", "inputs": {
            "crops": ["3", 0], "landmarks": ["3", 1], "start_from": "target", "target_landmarks": ["4", 0],
            "edits": edits_to_json({0: offsets_at(10, -6.5, 4.0)})}},
        "6": save("target", "4"),
        "7": save("edited", "5"),
    }
    entry = comfy.run(graph)
    assert entry["status"]["status_str"] == "success", entry["status"]

    def points(node):
        import json
        saved = entry["outputs"][node]["landmarks_json"][0]
        return np.array(json.loads(comfy.output_path(saved).read_text())["faces"][0]["points"])

    target, edited = points("6"), points("7")
    np.testing.assert_allclose(edited - target, offsets_at(10, -6.5, 4.0), atol=2e-3)
    shown = entry["outputs"]["5"]["face_edit_editor"][0]
    np.testing.assert_allclose(shown["points"], target, atol=2e-3)  # the widget starts from the target
    assert comfy.output_path(shown["crop"]).is_file()
