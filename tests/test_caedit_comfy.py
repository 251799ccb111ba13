"""CA-Edit in a real ComfyUI 0.3.75 on CPU, with the tiny SD1.5-shaped checkpoint, ViT-L vision tower and adapters
written by tests/tiny_sd15.py: the example workflows run, STFG changes the sample, the paste keeps the outside."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from caedit_core.checkpoint import save_adapter
from scripts.comfy_server import PACK_DIR, ComfyServer, execution_error
from scripts.specs import caedit as spec
from scripts.specs.face import SAMPLE_IMAGE
from scripts.workflow_api import build_ui, ui_to_api
from tiny_sd15 import tiny_adapter, write_checkpoint, write_clip_vision

pytestmark = pytest.mark.comfy
CKPT, VISION, ADAPTER, NARROW = "tiny_sd15_inpaint.safetensors", "tiny_vitl.safetensors", "tiny_ca2.safetensors", "narrow_ca2.safetensors"
CROP = 128  # latent 16 x 16: a few seconds per run on two cores


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("caedit_comfy")
    models = base / "models"
    write_checkpoint(models / "checkpoints" / CKPT)
    write_clip_vision(models / "clip_vision" / VISION)
    save_adapter(tiny_adapter(0, "unet", refnet=True, residual_scale=0.02), models / "ca2" / ADAPTER)
    save_adapter(tiny_adapter(0, "refnet", refnet=True, clip_dim=32), models / "ca2" / NARROW)
    _write_tiny_segformer(models / "face_parsing" / "tiny_segformer")
    srv = ComfyServer(base).start()
    srv.add_input_file(PACK_DIR / "assets" / "portrait.jpg", SAMPLE_IMAGE)
    yield srv
    srv.stop()


def _write_tiny_segformer(folder):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    from caedit_core.face_parsing import SEGFORMER_LABELS
    config = SegformerConfig(num_labels=19, id2label=dict(enumerate(SEGFORMER_LABELS)), hidden_sizes=[8, 8, 8, 8],
                             depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=8)
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)


def _prompt(server, name, **overrides):
    """API prompt of an example workflow with the tiny models, a 128 crop and 3 steps; overrides: {node id: {input: v}}."""
    info = server.object_info()
    title, nodes = spec.WORKFLOWS[name]
    prompt = ui_to_api(build_ui(nodes, info, title), info)
    changes = {"5": {"ckpt_name": CKPT}, "3": {"size": CROP}, "4": {"grow": 4}, "15": {"steps": 3}, "19": {"feather": 2},
               "13": {"strength": 0.5}, "9": {"clip_name": VISION}, "11": {"adapter_name": ADAPTER}}
    for node_id, values in {**changes, **overrides}.items():
        if node_id in prompt:
            prompt[node_id]["inputs"].update(values)
    prompt["90"] = {"class_type": "MaskToImage", "inputs": {"mask": ["4", 0]}}
    prompt["91"] = {"class_type": "SaveImage", "inputs": {"images": ["90", 0], "filename_prefix": "test/mask"}}
    prompt["92"] = {"class_type": "SaveLatent", "inputs": {"samples": ["17", 0], "filename_prefix": "test/sampled"}}
    prompt["93"] = {"class_type": "SaveLatent", "inputs": {"samples": ["8", 2], "filename_prefix": "test/source"}}
    return prompt


def _run(server, prompt) -> dict:
    entry = server.run(prompt, timeout=600)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    load = lambda node: np.asarray(Image.open(server.output_path(entry["outputs"][node]["images"][0]))).astype(np.int16)  # noqa: E731
    latent = lambda node: load_file(server.output_path(entry["outputs"][node]["latents"][0]))["latent_tensor"]  # noqa: E731
    return {"photo": load("21"), "crop": load("22"), "source": load("23"), "mask": load("91")[..., 0],
            "sampled": latent("92"), "source_latent": latent("93")}


def _latent_outside(out) -> torch.Tensor:
    """Latent positions the sampler's (bilinearly resized) denoise mask leaves fully outside."""
    mask = torch.from_numpy(out["mask"] / 255.0).float()[None, None]
    return F.interpolate(mask, size=out["sampled"].shape[-2:], mode="bilinear")[0, 0] == 0


def test_nodes_are_registered_with_tooltips(server):
    info = server.object_info()
    for name in ("FaceEditCA2AdapterLoader", "FaceEditCA2Adapter", "FaceEditSTFGGuider", "FaceEditCAEditPaste", "FaceEditParsingMask"):
        assert name in info, server.log()[-3000:]
        inputs = {**info[name]["input"]["required"], **info[name]["input"].get("optional", {})}
        assert all(spec_[1].get("tooltip") for spec_ in inputs.values()), name
    assert ADAPTER in info["FaceEditCA2AdapterLoader"]["input"]["required"]["adapter_name"][0]
    assert info["FaceEditParsingMask"]["input"]["required"]["parser"][0] == ["tiny_segformer"]


def test_ca2_example_workflow_runs_and_keeps_everything_outside_the_mask(server):
    out = _run(server, _prompt(server, "caedit_ca2_stfg_inpaint.json"))
    photo = np.asarray(Image.open(PACK_DIR / "assets" / "portrait.jpg").convert("RGB")).astype(np.int16)
    assert out["photo"].shape == photo.shape  # the input size
    assert out["crop"].shape == out["source"].shape == (CROP, CROP, 3)
    outside, inside = out["mask"] == 0, out["mask"] == 255
    assert outside.sum() > 0.8 * CROP * CROP and inside.sum() > 20
    assert np.array_equal(out["crop"][outside], out["source"][outside])  # final paste: exact outside the mask
    keep = _latent_outside(out)  # Blended Diffusion: the sampled latent is the source there (float32 rounding)
    assert keep.sum() > 100 and (out["sampled"] - out["source_latent"])[..., keep].abs().max() < 1e-5
    assert np.abs(out["crop"][inside] - out["source"][inside]).max() > 20  # and the region was regenerated
    changed = np.abs(out["photo"] - photo).max(axis=-1) > 0
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 0 and (xs.max() - xs.min()) < 200 and (ys.max() - ys.min()) < 120  # brows only


def test_training_free_stfg_changes_the_sample_only_inside_the_mask(server):
    plain = _run(server, _prompt(server, "caedit_training_free_stfg.json", **{"13": {"strength": 0.0}}))
    guided = _run(server, _prompt(server, "caedit_training_free_stfg.json"))
    outside, inside = guided["mask"] == 0, guided["mask"] == 255
    assert np.array_equal(guided["crop"][outside], plain["crop"][outside])
    assert np.array_equal(guided["crop"][outside], guided["source"][outside])
    keep = _latent_outside(guided)
    assert (guided["sampled"] - guided["source_latent"])[..., keep].abs().max() < 1e-5
    assert np.abs(guided["crop"][inside] - plain["crop"][inside]).mean() > 1.0


def test_stfg_at_strength_0_is_the_stock_cfg_guider_bit_for_bit(server):
    stfg = _run(server, _prompt(server, "caedit_training_free_stfg.json", **{"13": {"strength": 0.0}}))
    prompt = _prompt(server, "caedit_training_free_stfg.json")
    inputs = prompt["13"]["inputs"]
    prompt["13"] = {"class_type": "CFGGuider", "inputs": {k: inputs[k] for k in ("model", "positive", "negative", "cfg")}}
    stock = _run(server, prompt)
    assert torch.equal(stfg["sampled"], stock["sampled"])


def test_prompt_tokens_and_reference_net_maps_run_in_the_real_server(server):
    words = {"13": {"clip": ["5", 1], "prompt_text": spec.ATTRIBUTE, "tokens": "prompt"}}
    by_words = _run(server, _prompt(server, "caedit_training_free_stfg.json", **words))
    by_all = _run(server, _prompt(server, "caedit_training_free_stfg.json", **{"13": {"tokens": "all_but_start"}}))
    assert not torch.equal(by_words["sampled"], by_all["sampled"])  # another boundary region, another sample
    refnet = _run(server, _prompt(server, "caedit_ca2_stfg_inpaint.json", **{"13": {"maps": "refnet"}}))
    unet = _run(server, _prompt(server, "caedit_ca2_stfg_inpaint.json"))
    assert not torch.equal(refnet["sampled"], unet["sampled"])


def test_ca2_strength_and_reference_net_change_the_sample(server):
    base = _run(server, _prompt(server, "caedit_ca2_stfg_inpaint.json", **{"13": {"strength": 0.0}}))
    off = _run(server, _prompt(server, "caedit_ca2_stfg_inpaint.json",
                               **{"13": {"strength": 0.0}, "12": {"strength": 0.0, "refnet_strength": 0.0}}))
    free = _run(server, _prompt(server, "caedit_training_free_stfg.json", **{"13": {"strength": 0.0}}))
    inside = base["mask"] == 255
    assert np.abs(off["crop"] - free["crop"]).max() <= 1  # CA2 at strength 0, no residuals = the plain model
    assert np.abs(base["crop"][inside] - off["crop"][inside]).mean() > 1.0


def test_adapter_for_another_clip_vision_width_is_refused_clearly(server):
    prompt = _prompt(server, "caedit_ca2_stfg_inpaint.json", **{"11": {"adapter_name": NARROW}})
    entry = server.run(prompt, timeout=600)
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "FaceEditCA2Adapter"
    message = error["exception_message"]
    assert "32-wide" in message and "gives 1024 (ViT-L/14)" in message and "CLIP Vision Loader" in message


def test_face_parsing_mask_node_runs_a_local_segformer(server):
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": SAMPLE_IMAGE}},
              "2": {"class_type": "FaceEditParsingMask", "inputs": {"image": ["1", 0], "parser": "tiny_segformer",
                                                                    "regions": "skin, brows, hair", "grow": 1}},
              "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
              "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "test/parsing"}}}
    entry = server.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    mask = np.asarray(Image.open(server.output_path(entry["outputs"]["4"]["images"][0])))
    assert mask.shape[:2] == (512, 512) and set(np.unique(mask)) <= {0, 255}
