"""The LaTo engine as the nodes use it: file configs, the model holder with LoRA clones, tokens, one edit."""

import pytest
import torch
from safetensors.torch import save_file

from lato_core.dit.config import DiTConfig
from lato_core.dit.loading import expected_shapes
from lato_core.engine.files import (SIDECAR_SUFFIX, config_sections, infer_connector_config, infer_dit_config,
                                    read_header)
from lato_core.errors import ModelFileError
from lato_core.engine.model import load_lato_model
from lato_core.engine.run import edit_latent, tokenize_landmarks
from lato_core.engine.text_encoder import encode_edit, load_text_encoder
from lato_core.errors import FaceEditError
from lato_core.tokenizer.loading import load_tokenizer, points_to_tokens_input
from tests import tiny_lato
from tests.tiny_dit import TINY


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny_lato.write_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def model(files):
    return load_lato_model(files["dit"], storage="fp32")


def test_configs_come_from_the_file(files):
    shapes, metadata = read_header(files["dit"])
    sections = config_sections(files["dit"], metadata)
    assert infer_dit_config(shapes, sections) == TINY
    assert infer_connector_config(shapes, sections) == tiny_lato.CONNECTOR
    # Without metadata, shapes alone give the release config for release shapes (heads of 128, axes 16/56/56).
    release = {k: v for k, v in expected_shapes(DiTConfig.release(), with_landmark_in=True).items()}
    assert infer_dit_config(release) == DiTConfig.release()


def test_what_shapes_cannot_tell_is_refused_by_name_or_read_from_a_sidecar(tmp_path, files):
    shapes, _ = read_header(files["dit"])
    with pytest.raises(ModelFileError, match=r"my\.safetensors: its attention heads are 32 wide.*axes_dim"):
        infer_dit_config(shapes, {}, "my.safetensors")
    with pytest.raises(ModelFileError, match=r"my\.safetensors: its connector is 32 wide.*num_heads"):
        infer_connector_config(shapes, {}, "my.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({k: torch.zeros(v) for k, v in shapes.items()}, str(plain))   # same weights, no metadata
    sidecar = tmp_path / ("plain.safetensors" + SIDECAR_SUFFIX)
    sidecar.write_text('{"dit": {"axes_dim": [4, 14, 14]}, "connector": {"num_heads": 4}}')
    sections = config_sections(plain, {})
    assert infer_dit_config(shapes, sections, str(plain)) == TINY
    assert infer_connector_config(shapes, sections, str(plain)) == tiny_lato.CONNECTOR
    for bad, why in (("{not json", "not a valid LaTo config"), ('{"dit": {"axes_dim": [2, 7, 7]}}', "does not fit"),
                     ('{"dit": {"heads": 3}}', "unknown fields"), ('[' * 100_000, "not a valid LaTo config")):
        sidecar.write_text(bad)
        with pytest.raises(ModelFileError, match=why) as info:
            infer_dit_config(shapes, config_sections(plain, {}), str(plain))
        assert "plain.safetensors" in str(info.value)
    broken_img_in = dict(shapes, **{"img_in.weight": (64,)})
    with pytest.raises(ModelFileError, match=r"img_in\.weight is of shape \[64\], expected a 2-D tensor"):
        infer_dit_config(broken_img_in, {"dit": {"axes_dim": [4, 14, 14]}}, "x.safetensors")
    partial = {k: v for k, v in shapes.items() if "global_proj_out" not in k}
    with pytest.raises(ModelFileError, match=r"connector\.global_proj_out\.weight is missing"):
        infer_connector_config(partial, {"connector": {"num_heads": 4}}, "x.safetensors")


def test_unreadable_and_wrong_files_name_the_problem(tmp_path, files):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(ModelFileError, match="broken.safetensors is not a readable .safetensors"):
        read_header(bad)
    with pytest.raises(ModelFileError, match="Model file not found: .*nothing.safetensors"):
        read_header(tmp_path / "nothing.safetensors")
    with pytest.raises(ModelFileError, match="plain FLUX file .* models/diffusion_models/"):
        load_lato_model(files["plain_flux"])


def test_missing_adapter_is_named_and_the_release_pth_fills_it(tmp_path, files):
    no_adapter = tiny_lato.write_dit(tmp_path / "lato_no_adapter.safetensors", with_landmark_in=False)
    with pytest.raises(ModelFileError, match="no landmark_in.* put landmark_in.pth .* models/lato/"):
        load_lato_model(no_adapter)
    loaded = load_lato_model(no_adapter, landmark_adapter=files["adapter"], storage="fp32")
    expected = torch.load(files["adapter"], weights_only=True)["weight"]
    assert torch.equal(loaded.dit.landmark_in.weight, expected) and loaded.notes


def _random_lora(path, config: DiTConfig, rank=2):
    gen = torch.Generator().manual_seed(5)
    state = {}
    for module, (out_f, in_f) in {"double_blocks_0_img_attn_qkv": (3 * config.hidden_size, config.hidden_size),
                                  "landmark_in": (config.hidden_size, config.landmark_dim)}.items():
        state[f"lora_unet_{module}.lora_down.weight"] = torch.randn(rank, in_f, generator=gen)
        state[f"lora_unet_{module}.lora_up.weight"] = torch.randn(out_f, rank, generator=gen)
        state[f"lora_unet_{module}.alpha"] = torch.tensor(float(rank))
    save_file(state, str(path))
    return path


def test_lora_clone_patches_only_inside_ready(tmp_path, model):
    from tests.tiny_dit import tiny_inputs

    inputs = tiny_inputs()
    forward = lambda dit: dit(inputs["img_noisy"], inputs["img_source"], inputs["timesteps"], inputs["txt"],
                              inputs["y"], grid_hw=(4, 6), landmark_tokens=inputs["landmark_tokens"],
                              landmark_xy=inputs["landmark_xy"])
    before = forward(model.dit)
    clone = model.with_lora(str(_random_lora(tmp_path / "lora.safetensors", model.dit.config)), 0.5)
    assert clone.dit is model.dit and model.loras == () and len(clone.loras) == 1
    with clone.ready("cpu") as dit:
        assert not torch.allclose(forward(dit), before)
    with model.ready("cpu") as dit:
        assert torch.equal(forward(dit), before)  # the shared modules are back to the base weights


def test_tokens_are_the_tokenizer_codes_of_the_crop_landmarks(files, astronaut, astronaut_face):
    from lato_core.face.crop import crop_faces

    tokenizer = load_tokenizer(files["tokenizer"])
    _, _, faces = crop_faces(astronaut, [astronaut_face])
    tokens = tokenize_landmarks(tokenizer, faces)
    indices, codes = tokenizer.encode(points_to_tokens_input(torch.tensor(faces[0].points).float()[None], 512))
    assert torch.equal(tokens.indices, indices) and torch.equal(tokens.codes, codes)
    assert tokens.canvas_hw == (512, 512) and tokens.visible.all()


@pytest.fixture(scope="module")
def conditioning(files, model, astronaut):
    encoder = load_text_encoder(files["text_encoder"], device="cpu")
    crops = torch.nn.functional.interpolate(astronaut.permute(0, 3, 1, 2), size=(64, 64)).permute(0, 2, 3, 1)
    return encode_edit(encoder, model, "smile", crops)


def _tokens(files, astronaut_face):
    from lato_core.face.crop import crop_faces

    faces = crop_faces(torch.zeros(1, 512, 512, 3), [astronaut_face], size=64)[2]
    return tokenize_landmarks(load_tokenizer(files["tokenizer"]), faces)


def test_one_edit_is_deterministic_and_follows_guidance(files, model, conditioning, astronaut_face):
    cond, uncond = conditioning
    assert cond.hidden.shape == (1, 640, 64) and cond.pooled.shape == (1, 16)
    tokens = _tokens(files, astronaut_face)
    source = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    steps = []
    run = lambda **kw: edit_latent(model, cond, uncond, tokens, source, seed=1, steps=3, **kw)
    first = run(callback=lambda i, n, x: steps.append((i, n)))
    assert first.shape == source.shape and steps == [(0, 3), (1, 3), (2, 3)]
    assert torch.equal(first, run())
    assert not torch.allclose(first, edit_latent(model, cond, uncond, tokens, source, seed=2, steps=3))
    assert not torch.allclose(first, run(mode="none"))
    assert not torch.allclose(first, edit_latent(model, cond, uncond, None, source, seed=1, steps=3))


def test_edit_refuses_non_flux_latents_and_can_be_interrupted(files, model, conditioning, astronaut_face):
    cond, uncond = conditioning
    with pytest.raises(FaceEditError, match="FLUX latent .* VAELoader"):
        edit_latent(model, cond, uncond, None, torch.zeros(1, 4, 8, 8), seed=0)

    class Stop(Exception):
        pass

    def interrupt():
        raise Stop

    with pytest.raises(Stop):
        edit_latent(model, cond, uncond, None, torch.zeros(1, 16, 8, 8), seed=0, interrupt=interrupt)
    assert next(model.dit.parameters()).device.type == "cpu"  # moved back even when stopped


def test_learned_null_tokens_are_loaded_and_used_by_landmark_aware_guidance(tmp_path, files, model, conditioning,
                                                                            astronaut_face):
    with_null = load_lato_model(tiny_lato.write_dit(tmp_path / "lato_null.safetensors", null_tokens=True), storage="fp32")
    assert with_null.null_tokens.shape == (68, TINY.landmark_dim) and "null" in " ".join(with_null.notes)
    assert model.null_tokens is None  # same weights, no learned tokens: the geometry-free branch drops landmarks
    cond, uncond = conditioning
    tokens = _tokens(files, astronaut_face)
    source = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    run = lambda m, mode: edit_latent(m, cond, uncond, tokens, source, seed=1, steps=2, mode=mode, scale=3.0,
                                      geometry_scale=2.0)
    assert torch.equal(run(with_null, "release"), run(model, "release"))  # nulls only matter to landmark_aware
    assert not torch.allclose(run(with_null, "landmark_aware"), run(model, "landmark_aware"))
