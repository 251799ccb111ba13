"""The LaTo example workflow in the real ComfyUI, on CPU, with tiny random weights in the released layouts: the
native MODEL through core's LoraLoaderModelOnly and KSampler, with latent previews while it samples.

Core's Load CLIP (qwen_image) only builds the 7B encoder, so here its place is taken by the pack's Qwen folder loader
with a tiny folder; tests/test_browser.py runs the file as it is, with a random full-size qwen_image file."""
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from scripts.build_workflows import SAMPLE_IMAGE
from scripts.comfy_server import PACK_DIR, ComfyServer, execution_error
from scripts.specs.lato import LATO_EDIT
from scripts.workflow_api import ui_to_api
from tests import tiny_lato
from tests.test_model_file_errors import RunsCode
from tests.workflow_models import write_lato_lora

pytestmark = [pytest.mark.comfy, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_lato")
    files = tiny_lato.write_all(base / "models", vae=True)
    write_lato_lora(base / "models" / "loras" / "lato_tiny_lora.safetensors")
    (base / "models" / "lato" / "landmark_in_malicious.pth").write_bytes(pickle.dumps({"weight": RunsCode()}))
    from tests.tiny_vlm import build_tiny_vlm
    build_tiny_vlm(base / "models" / "lato" / "Landmark_Predictor")   # a VLM folder beside the tokenizer
    with ComfyServer(base, extra_args=("--preview-method", "latent2rgb")) as comfy:
        comfy.add_input_file(PACK_DIR / "assets" / "portrait.jpg", SAMPLE_IMAGE)
        yield comfy, files


def _tiny_prompt(info, crop_size=64, steps=2):
    workflow = json.loads((PACK_DIR / "workflows" / "lato_edit.json").read_text())
    prompt = ui_to_api(workflow, info)
    by_type = {node["type"]: str(node["id"]) for node in LATO_EDIT}
    overrides = {
        "FaceEditCrop": {"size": crop_size},
        "FaceEditLaToModelLoader": {"dit_name": "lato_tiny.safetensors", "landmark_adapter": "landmark_in_tiny.pth"},
        "LoraLoaderModelOnly": {"lora_name": "lato_tiny_lora.safetensors"},
        "FaceEditLaToTokenizerLoader": {"tokenizer_name": "tokenizer_tiny.safetensors"},
        "VAELoader": {"vae_name": "flux_vae_random.safetensors"},
        "KSampler": {"steps": steps, "seed": 7},
    }
    for kind, values in overrides.items():
        prompt[by_type[kind]]["inputs"].update(values)
    clip_loader, encode = by_type["CLIPLoader"], by_type["FaceEditLaToTextEncode"]
    prompt[clip_loader] = {"class_type": "FaceEditLaToTextEncoderLoader", "inputs": {"folder": "qwen_tiny"}}
    del prompt[encode]["inputs"]["clip"]
    prompt[encode]["inputs"]["text_encoder"] = [clip_loader, 0]
    return workflow, prompt


def test_lato_workflow_runs_on_cpu_and_returns_the_photo_size(server):
    comfy, _ = server
    info = comfy.object_info()
    for node in ("FaceEditLaToModelLoader", "FaceEditLaToTokenizerLoader", "FaceEditLaToTextEncoderLoader", "FaceEditLaToLandmarkTokens",
                 "FaceEditLaToTextEncode", "FaceEditLaToEditConditioning", "FaceEditLaToLandmarkAwareGuider", "FaceEditLaToReleaseSchedule"):
        assert node in info, comfy.log()[-3000:]
    workflow, prompt = _tiny_prompt(info, steps=3)
    entry, messages, previews = comfy.run_watching(prompt, timeout=900)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    sampler = next(k for k, v in prompt.items() if v["class_type"] == "KSampler")
    progress = [m["data"]["value"] for m in messages if m["type"] == "progress" and m["data"]["node"] == sampler]
    assert progress[-3:] == [1, 2, 3]   # core KSampler's progress bar ...
    assert previews >= 3                # ... and a latent preview per step (FLUX latent2rgb)
    titles = {str(n["id"]): n.get("title", n["type"]) for n in workflow["nodes"]}
    outputs = {titles[k]: v for k, v in entry["outputs"].items()}
    photo = Image.open(PACK_DIR / "assets" / "portrait.jpg")
    edited = Image.open(comfy.output_path(outputs["LaTo edit"]["images"][0]))
    crop = Image.open(comfy.output_path(outputs["Edited crop"]["images"][0]))
    assert edited.size == photo.size and crop.size == (64, 64)
    # random weights make noise, but only inside the face crop: the suit below is untouched
    diff = np.abs(np.asarray(edited, np.int16) - np.asarray(photo.convert("RGB"), np.int16)).max(axis=-1)
    assert diff[:300].max() > 20 and diff[400:].max() <= 2


def test_a_plain_flux_file_is_refused_with_the_fix(server):
    comfy, _ = server
    _, prompt = _tiny_prompt(comfy.object_info())
    loader = next(k for k, v in prompt.items() if v["class_type"] == "FaceEditLaToModelLoader")
    prompt[loader]["inputs"]["dit_name"] = "flux_plain_tiny.safetensors"
    entry = comfy.run(prompt)
    error = execution_error(entry)
    assert error and "plain FLUX file" in error["exception_message"] and "models/diffusion_models/" in error["exception_message"]


def test_model_lists_keep_vlm_shards_out_of_the_file_choices(server):
    comfy, _ = server
    info = comfy.object_info()
    tokenizers = info["FaceEditLaToTokenizerLoader"]["input"]["required"]["tokenizer_name"][0]
    adapters = info["FaceEditLaToModelLoader"]["input"]["required"]["landmark_adapter"][0]
    assert "tokenizer_tiny.safetensors" in tokenizers and not any("Landmark_Predictor" in f for f in tokenizers)
    assert "landmark_in_tiny.pth" in adapters
    assert info["FaceEditLandmarkVLMLoader"]["input"]["required"]["folder"][0] == ["Landmark_Predictor"]
    assert info["FaceEditLaToTextEncoderLoader"]["input"]["required"]["folder"][0] == ["qwen_tiny"]


def test_a_code_carrying_adapter_is_refused_by_name_and_the_next_prompt_runs(server):
    comfy, _ = server
    info = comfy.object_info()
    _, prompt = _tiny_prompt(info, steps=1)
    loader = next(k for k, v in prompt.items() if v["class_type"] == "FaceEditLaToModelLoader")
    prompt[loader]["inputs"]["landmark_adapter"] = "landmark_in_malicious.pth"
    error = execution_error(comfy.run(prompt))
    message = error["exception_message"]
    assert error["exception_type"].endswith("ModelFileError")
    assert "landmark_in_malicious.pth" in message and "models/lato/" in message and "never run" in message
    assert "weights_only=False" not in message and "likely succeed" not in message
    _, good = _tiny_prompt(info, steps=1)
    assert comfy.run(good)["status"]["status_str"] == "success"
