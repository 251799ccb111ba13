"""VlmPredictor end to end on tiny random Qwen VLMs written to folders in the test (nothing is downloaded)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import lato_core.predictor.vlm as vlm_module
from lato_core.errors import FaceEditError
from lato_core.face.landmarks import FaceLandmarks
from lato_core.predictor.vlm import VlmLoadError, VlmPredictor, check_model_folder, predict_with_fallback
from lato_core.predictor.vlm_parse import VlmOutputError
from lato_core.predictor.vlm_prompt import answer_json
from tests.tiny_vlm import build_tiny_vlm, sample_face

FACE = sample_face()
IMAGE = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
TARGET = np.rint(FACE.points + np.where(np.arange(68)[:, None] >= 48, [0.0, -4.0], 0.0))  # mouth a little up


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("vlm") / "qwen2_5_vl_tiny")


@pytest.fixture(scope="module")
def vlm(tiny_folder):
    return VlmPredictor(tiny_folder, device="cpu")


def parametric() -> FaceLandmarks:
    return FACE.with_points(FACE.points, backend="parametric")


def valid_reply(points=TARGET) -> str:
    return f"<think>Smile: mouth corners up.</think>\n<answer>\n```json\n{answer_json(points)}\n```\n</answer>"


def script_reply(monkeypatch, predictor: VlmPredictor, text: str) -> list[dict]:
    """Make the model 'generate' `text` (TEST ONLY); returns the captured generate() arguments."""
    calls = []
    tokenizer = predictor.processor.tokenizer

    def fake_generate(**kwargs):
        calls.append(kwargs)
        new = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        return torch.cat([kwargs["input_ids"], new, torch.tensor([[tokenizer.eos_token_id]])], dim=1)

    monkeypatch.setattr(predictor.model, "generate", fake_generate)
    return calls


def test_loads_the_folder_on_cpu_in_fp32(vlm, tiny_folder):
    assert vlm.family == "qwen2_5_vl" == check_model_folder(tiny_folder)
    assert vlm.device.type == "cpu" and vlm.dtype == torch.float32
    assert next(vlm.model.parameters()).dtype == torch.float32 and not vlm.model.training


def test_random_model_output_falls_back_and_says_why(vlm):
    face, report = predict_with_fallback(vlm, IMAGE, "smile", FACE, parametric, max_new_tokens=24)
    assert report["used"] == "parametric" and face.backend == "parametric"
    assert report["reason"].startswith("VLM landmark answer rejected (")
    assert report["raw"] and report["raw"] == vlm.generate_text(IMAGE, "smile", FACE, max_new_tokens=24)  # greedy
    with pytest.raises(VlmOutputError):
        vlm.predict(IMAGE, "smile", FACE, max_new_tokens=24)


def test_valid_answer_is_used(vlm, monkeypatch):
    calls = script_reply(monkeypatch, vlm, valid_reply())
    face, report = predict_with_fallback(vlm, IMAGE, "make her smile", FACE, parametric, max_new_tokens=77)
    assert report["used"] == "vlm" and face.backend == "vlm" and report["raw"] == valid_reply()
    assert np.abs(face.points - TARGET).max() <= 1.5 and any("smoothed" in n for n in report["notes"])
    (call,) = calls
    assert call["max_new_tokens"] == 77 and call["do_sample"] is False
    assert tuple(call["image_grid_thw"][0].tolist()) == (1, 36, 36) and call["pixel_values"].dtype == torch.float32
    prompt = vlm.processor.tokenizer.decode(call["input_ids"][0])
    assert prompt.count("<|image_pad|>") == 36 * 36 // 4
    assert prompt.index("512 x 512") < prompt.index("<|image_pad|>") < prompt.index("make her smile")
    assert "<answer>" in prompt and '"JAW/BROWS": 27 points' in prompt
    assert "as it is now" not in prompt   # photo only by default, like the release


def test_predict_returns_the_raw_reply_and_the_face(vlm, monkeypatch):
    script_reply(monkeypatch, vlm, valid_reply())
    raw, face = vlm.predict(IMAGE, "smile", FACE, max_new_tokens=10)
    assert raw == valid_reply() and face.image_size == (512, 512)


def test_generation_error_falls_back(vlm, monkeypatch):
    def broken(**_):
        raise RuntimeError("CUDA out of memory")
    monkeypatch.setattr(vlm.model, "generate", broken)
    face, report = predict_with_fallback(vlm, IMAGE, "smile", FACE, parametric)
    assert report == {"used": "parametric", "reason": "generation failed: RuntimeError: CUDA out of memory",
                      "raw": "", "notes": []}
    assert face.backend == "parametric"


def test_no_model_uses_the_fallback():
    face, report = predict_with_fallback(None, IMAGE, "smile", FACE, parametric)
    assert report["used"] == "parametric" and "no VLM" in report["reason"] and face.backend == "parametric"


def test_bad_inputs_are_errors_not_fallbacks(vlm):
    with pytest.raises(FaceEditError, match="512x512 image but the image is 300x200"):
        predict_with_fallback(vlm, IMAGE[:200, :300], "smile", FACE, parametric)
    with pytest.raises(FaceEditError, match="needs an edit instruction"):
        predict_with_fallback(vlm, IMAGE, "   ", FACE, parametric)
    with pytest.raises(FaceEditError, match="uint8"):
        vlm.predict(IMAGE.astype(np.float32), "smile", FACE)


def test_other_image_sizes_are_stretched_to_the_canvas_and_mapped_back(vlm, monkeypatch):
    size = np.array([640, 480])
    source = FaceLandmarks((FACE.points + 0.5) * size / 512 - 0.5, image_size=tuple(size))
    calls = script_reply(monkeypatch, vlm, valid_reply(np.rint(FACE.points)))
    image = np.zeros((480, 640, 3), np.uint8)
    face, report = predict_with_fallback(vlm, image, "smile", source, parametric)
    assert report["used"] == "vlm" and face.image_size == (640, 480)
    assert tuple(calls[0]["image_grid_thw"][0].tolist()) == (1, 36, 36)
    assert np.abs(face.points - source.points).max() <= 2.0 * 640 / 512


def test_source_points_can_be_quoted_in_the_prompt(tiny_folder, monkeypatch):
    predictor = VlmPredictor(tiny_folder, device="cpu", with_points=True)
    calls = script_reply(monkeypatch, predictor, valid_reply())
    predictor.predict(IMAGE, "smile", FACE)
    prompt = predictor.processor.tokenizer.decode(calls[0]["input_ids"][0])
    assert "as it is now" in prompt and answer_json(FACE.points) in prompt


def test_qwen3_vl_folder_end_to_end(tmp_path, monkeypatch):
    predictor = VlmPredictor(build_tiny_vlm(tmp_path / "qwen3_vl_tiny", family="qwen3_vl"), device="cpu")
    assert predictor.family == "qwen3_vl" and type(predictor.model).__name__ == "Qwen3VLForConditionalGeneration"
    _, report = predict_with_fallback(predictor, IMAGE, "smile", FACE, parametric, max_new_tokens=16)
    assert report["used"] == "parametric" and report["raw"]
    script_reply(monkeypatch, predictor, valid_reply())
    _, report = predict_with_fallback(predictor, IMAGE, "smile", FACE, parametric)
    assert report["used"] == "vlm"


def _drop(name):
    return lambda folder: (folder / name).unlink()


def _edit_json(name, change):
    def edit(folder):
        path = folder / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return edit


def _shard_index(folder):
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


@pytest.mark.parametrize("damage,message", [
    (_drop("config.json"), "has no config.json"),
    (lambda f: (f / "config.json").write_text("{not json"), "cannot be read as JSON"),
    (_edit_json("config.json", lambda c: c | {"model_type": "llama"}), "holds a 'llama' model"),
    (_drop("model.safetensors"), "missing model.safetensors or model.safetensors.index.json"),
    (_shard_index, "missing weight shard model-00002-of-00002.safetensors"),
    (_drop("tokenizer.json"), "missing tokenizer.json"),
    (_drop("processor_config.json"), "missing preprocessor_config.json"),
    (_drop("chat_template.jinja"), "missing a chat template"),
    (lambda f: (f / "model.safetensors").write_bytes(b"\0" * 64), "Could not load the qwen2_5_vl model"),
], ids=["no_config", "bad_config", "unsupported_family", "no_weights", "missing_shard", "no_tokenizer",
        "no_processor", "no_chat_template", "corrupt_weights"])
def test_folder_errors_name_the_folder_and_the_problem(tiny_folder, tmp_path, damage, message):
    folder = shutil.copytree(tiny_folder, tmp_path / "damaged_model")
    damage(folder)
    with pytest.raises(VlmLoadError, match=message) as info:
        VlmPredictor(folder, device="cpu")
    assert "damaged_model" in str(info.value)


def test_missing_folder_and_old_transformers(tmp_path, tiny_folder, monkeypatch):
    with pytest.raises(VlmLoadError, match="folder not found: .*nowhere"):
        VlmPredictor(tmp_path / "nowhere")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(VlmLoadError, match="folder not found"):
        check_model_folder(tmp_path / "a_file")
    monkeypatch.setitem(vlm_module.FAMILIES, "qwen2_5_vl", ("NoSuchModelClass", "9.9"))
    with pytest.raises(VlmLoadError, match="needs transformers >= 9.9"):
        VlmPredictor(tiny_folder, device="cpu")
