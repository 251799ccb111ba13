"""The pack inside a real ComfyUI 0.3.75: node registration, the example workflow, and bad input."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lato_core.face.detect import detect_faces
from scripts.build_workflows import SAMPLE_IMAGE
from scripts.comfy_server import PACK_DIR, execution_error
from scripts.workflow_api import ui_to_api
from nodes import NODE_CLASS_MAPPINGS

pytestmark = pytest.mark.comfy
PORTRAIT = PACK_DIR / "assets" / "portrait.jpg"


def test_every_node_is_registered_with_a_tooltip_on_every_input(comfy):
    info = comfy.object_info()
    for name in NODE_CLASS_MAPPINGS:
        assert name in info, f"{name} missing from /object_info; server log:\n{comfy.log()[-3000:]}"
        inputs = {**info[name]["input"].get("required", {}), **info[name]["input"].get("optional", {})}
        for input_name, spec in inputs.items():
            assert spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
    assert info["FaceEditCrop"]["output"] == ["IMAGE", "FACE_LANDMARKS_68", "FACE_CROP_INFO"]


def test_example_workflows_are_served_to_the_template_browser(comfy):
    served = comfy.get("/api/workflow_templates")
    mine = next(v for k, v in served.items() if k == "comfyui-face-edit")
    assert sorted(mine) == sorted(p.stem for p in (PACK_DIR / "workflows").glob("*.json"))


def _outputs_by_title(workflow, entry):
    titles = {str(n["id"]): n.get("title", n["type"]) for n in workflow["nodes"]}
    return {titles[node_id]: out for node_id, out in entry["outputs"].items()}


def test_example_workflow_runs_and_saves_images_and_landmarks(comfy):
    comfy.add_input_file(PORTRAIT, SAMPLE_IMAGE)
    workflow = json.loads((PACK_DIR / "workflows" / "face_landmarks_crop_stitch.json").read_text())
    entry = comfy.run(ui_to_api(workflow, comfy.object_info()))
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    outputs = _outputs_by_title(workflow, entry)

    photo = np.asarray(Image.open(PORTRAIT).convert("RGB")).astype(np.int16)
    stitched = np.asarray(Image.open(comfy.output_path(outputs["Stitched photo"]["images"][0]))).astype(np.int16)
    assert stitched.shape == photo.shape
    changed = np.abs(stitched - photo).max(axis=-1) > 2
    ys, xs = np.nonzero(changed)
    face = detect_faces(photo.astype(np.uint8))[0]
    x0, y0, x1, y1 = face.box
    # Drawn landmarks were pasted back through the face-oval mask: changes only on and around the face.
    assert changed.sum() > 500
    assert xs.min() > x0 - 40 and xs.max() < x1 + 40 and ys.min() > y0 - 60 and ys.max() < y1 + 40

    crop = Image.open(comfy.output_path(outputs["Crop with landmarks"]["images"][0]))
    assert crop.size == (512, 512)

    saved = json.loads(comfy.output_path(outputs["FaceEditSaveLandmarks"]["landmarks_json"][0]).read_text())
    points = np.asarray(saved["faces"][0]["points"])
    assert points.shape == (68, 2)
    assert np.abs(points - face.points).max() < 1e-3

    preview = outputs["FaceEditDetectLandmarks"]["images"][0]
    assert preview["type"] == "temp" and comfy.output_path(preview).is_file()


def test_predictor_workflow_turns_the_head_and_saves_before_after(comfy):
    from lato_core.face.landmarks import faces_from_json
    from lato_core.predictor.geometry import estimate_pose

    comfy.add_input_file(PORTRAIT, SAMPLE_IMAGE)
    workflow = json.loads((PACK_DIR / "workflows" / "face_predict_warp_stitch.json").read_text())
    entry = comfy.run(ui_to_api(workflow, comfy.object_info()))
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    outputs = _outputs_by_title(workflow, entry)
    before = np.asarray(Image.open(comfy.output_path(outputs["Before"]["images"][0]))).astype(np.int16)
    after = np.asarray(Image.open(comfy.output_path(outputs["After (warp preview)"]["images"][0]))).astype(np.int16)
    assert before.shape == after.shape == (512, 512, 3)
    changed = np.abs(after - before).max(axis=-1) > 8
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 2000 and ys.max() < 330 and xs.min() > 100  # the face moved, the suit did not

    target = faces_from_json(comfy.output_path(outputs["Target landmarks"]["landmarks_json"][0]).read_text())[0]
    crop_source = detect_faces(np.asarray(Image.open(comfy.output_path(outputs["Predicted landmarks"]["images"][0])))[..., :3])
    assert target.image_size == (512, 512) and crop_source  # the overlay is the crop, a face is still there
    report = json.loads(outputs["FaceEditLandmarkPredictor"]["text"][0])
    assert report[0]["used"] == "parametric" and report[0]["params"]["yaw"] == 30.0
    assert report[0]["params"]["expressions"] == {"happy": 0.5}
    assert estimate_pose(target)[0] > 20  # turned toward the subject's left


def _write_inputs(comfy, astronaut_rgb, hopper_rgb):
    from skimage import data
    folder = comfy.base / "input"
    Image.fromarray(data.coffee()).save(folder / "coffee.png")
    hop = np.asarray(Image.fromarray(hopper_rgb).resize((437, 512)))
    Image.fromarray(np.hstack([hop, astronaut_rgb])).save(folder / "two_faces.png")
    Image.fromarray(astronaut_rgb).convert("L").save(folder / "gray.png")
    Image.fromarray(np.dstack([astronaut_rgb, np.full((512, 512), 200, np.uint8)])).save(folder / "rgba.png")
    Image.fromarray(astronaut_rgb).resize((32, 32)).save(folder / "tiny.png")
    big = np.zeros((4000, 6000, 3), np.uint8)
    big[1000:3048, 2000:4048] = np.asarray(Image.fromarray(astronaut_rgb).resize((2048, 2048)))
    Image.fromarray(big).save(folder / "big.jpg", quality=85)


def _detect_prompt(image_name, **options):
    detect = {"image": ["1", 0], "backend": "dlib_hog", "selection": "largest", "index": 0, "order": "score",
              "min_score": 0.3, "upsample": 1, "detect_max_side": 1024, **options}
    return {"1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
            "2": {"class_type": "FaceEditDetectLandmarks", "inputs": detect},
            "3": {"class_type": "FaceEditSaveLandmarks", "inputs": {"landmarks": ["2", 0], "filename_prefix": "bad/t"}}}


def _json_prompt(text, policy="error"):
    return {"1": {"class_type": "FaceEditLoadLandmarks", "inputs": {"json_text": text, "out_of_canvas": policy}},
            "2": {"class_type": "FaceEditSaveLandmarks", "inputs": {"landmarks": ["1", 0], "filename_prefix": "bad/j"}}}


def _landmark_json(points):
    return json.dumps({"faces": [{"points": points, "image_size": [512, 512]}]})


@pytest.fixture(scope="module")
def bad_inputs(comfy, astronaut_rgb, hopper_rgb):
    _write_inputs(comfy, astronaut_rgb, hopper_rgb)
    return comfy


def _points(astronaut_face):
    return astronaut_face.points.round(2).tolist()


BAD_CASES = {
    "no face": (lambda f: _detect_prompt("coffee.png"), "NoFaceError", "No face found in image 0"),
    "index out of range": (lambda f: _detect_prompt("two_faces.png", selection="index", index=5),
                           "FaceSelectionError", "Face index 5 is out of range: image 0 has 2 face(s)"),
    "32x32": (lambda f: _detect_prompt("tiny.png"), "ImageFormatError", "32x32; face detection needs at least 64"),
    "67 points": (lambda f: _json_prompt(_landmark_json(_points(f)[:67])), "LandmarkFormatError",
                  "Expected 68 landmark points in iBUG-68 order, got 67"),
    "NaN": (lambda f: _json_prompt(_landmark_json(_points(f)[:5] + [[float("nan"), 3.0]] + _points(f)[6:])),
            "LandmarkFormatError", "Landmark points [5] are NaN"),
    "out of canvas": (lambda f: _json_prompt(_landmark_json([[900.0, 10.0]] + _points(f)[1:])),
                      "LandmarkFormatError", "outside the 512x512 canvas"),
    "malformed JSON": (lambda f: _json_prompt('{"faces": [ {"points": '), "LandmarkFormatError", "malformed at line 1"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_gives_a_clear_error_and_the_server_keeps_serving(bad_inputs, astronaut_face, case):
    make, exception_type, message = BAD_CASES[case]
    entry = bad_inputs.run(make(astronaut_face))
    error = execution_error(entry)
    assert entry["status"]["status_str"] == "error" and error, entry
    assert error["exception_type"].endswith(exception_type)
    assert message in error["exception_message"]
    assert bad_inputs.get("/system_stats")["system"]["comfyui_version"] == "0.3.75"


@pytest.mark.parametrize("image_name, faces", [("gray.png", 1), ("rgba.png", 1), ("big.jpg", 1), ("two_faces.png", 2)])
def test_awkward_but_valid_photos_work(bad_inputs, image_name, faces):
    entry = bad_inputs.run(_detect_prompt(image_name, selection="all"))
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    saved = entry["outputs"]["3"]["landmarks_json"][0]
    data = json.loads(bad_inputs.output_path(saved).read_text())
    assert len(data["faces"]) == faces


def test_type_mismatch_is_rejected_at_validation(comfy):
    prompt = _detect_prompt(SAMPLE_IMAGE)
    prompt["3"]["inputs"]["landmarks"] = ["1", 0]  # an IMAGE into a landmarks input
    comfy.add_input_file(PORTRAIT, SAMPLE_IMAGE)
    status, body = comfy.post("/prompt", {"prompt": prompt})
    assert status == 400 and "3" in body.get("node_errors", {})
