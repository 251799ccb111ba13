"""Step1X-Edit / LaTo DiT: parity with diffusers' FLUX transformer, landmark tokens, loading, bf16."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from tiny_dit import TINY, bfl_to_diffusers, diffusers_twin, random_bfl_state_dict, tiny_inputs, tiny_model

from lato_core.dit import DiTConfig, Step1XEditDiT, detect_checkpoint_kind, load_dit
from lato_core.dit import image_ids, load_landmark_in, text_ids
from lato_core.dit.layers import timestep_embedding
from lato_core.dit.loading import expected_shapes
from lato_core.dit.model import MissingLandmarkAdapterError
from lato_core.errors import ModelFileError

GRID = (4, 6)  # non-square latent grid, N = 24


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def twin():
    return diffusers_twin(TINY, random_bfl_state_dict())


def run(model, x, img_source=None, **kwargs):
    return model(x["img_noisy"], img_source, x["timesteps"], x["txt"], x["y"], grid_hw=GRID, **kwargs)


def assert_parity(ours, ref):
    scale = ref.abs().max().item()
    assert scale > 0.5
    assert (ours - ref).abs().max().item() <= 1e-4 * scale


# ---- layout and conventions ---------------------------------------------------------------------------------------

def test_layout_table_equals_model_parameters():
    for cfg in (TINY, DiTConfig.release()):
        with torch.device("meta"):
            model = Step1XEditDiT(cfg)
        assert expected_shapes(cfg) == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # release: FLUX.1 without guidance_in (11,891,178,560) + landmark_in Linear(3072, 3072)
    assert sum(p.numel() for p in model.parameters()) == 11_891_178_560 + 3072 * 3072 + 3072


def test_timestep_convention_matches_diffusers():
    # BFL/Step1X multiply t by 1000 inside timestep_embedding; diffusers multiplies by 1000 in forward
    from diffusers.models.embeddings import Timesteps

    t = torch.tensor([0.0, 0.25, 0.731, 1.0])
    ref = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)(t * 1000)
    torch.testing.assert_close(timestep_embedding(t, 256, time_factor=1000.0), ref, rtol=0, atol=2e-5)


# ---- parity with diffusers FluxTransformer2DModel ------------------------------------------------------------------

def test_converter_is_diffusers_own():
    converted = bfl_to_diffusers(random_bfl_state_dict(), TINY.hidden_size)
    assert converted["single_transformer_blocks.0.attn.to_q.weight"].shape == (64, 64)
    assert converted["single_transformer_blocks.0.proj_mlp.weight"].shape == (256, 64)


def test_parity_single_image_stream(model, twin):
    x = tiny_inputs(GRID, batch=2, seed=3)
    ours = run(model, x)
    ref = twin(hidden_states=x["img_noisy"], encoder_hidden_states=x["txt"], pooled_projections=x["y"],
               timestep=x["timesteps"], img_ids=image_ids(*GRID), txt_ids=text_ids(8), return_dict=False)[0]
    assert ours.shape == (2, 24, 64)
    assert_parity(ours, ref)


def test_parity_with_source_tokens(model, twin):
    x = tiny_inputs(GRID, batch=2, seed=4)
    ours = run(model, x, img_source=x["img_source"])
    ids = image_ids(*GRID)
    ref = twin(hidden_states=torch.cat([x["img_noisy"], x["img_source"]], dim=1), encoder_hidden_states=x["txt"],
               pooled_projections=x["y"], timestep=x["timesteps"], img_ids=torch.cat([ids, ids]),
               txt_ids=text_ids(8), return_dict=False)[0]
    assert ours.shape == (2, 24, 64) and ref.shape == (2, 48, 64)
    assert_parity(ours, ref[:, :24])
    assert (ours - run(model, x)).abs().max() > 1e-3  # the source really conditions the output


# ---- landmark tokens -----------------------------------------------------------------------------------------------

def test_landmarks_change_noisy_output_and_keep_length(model):
    x = tiny_inputs(GRID, seed=5)
    base = run(model, x, img_source=x["img_source"])
    with_lm = run(model, x, img_source=x["img_source"], landmark_tokens=x["landmark_tokens"],
                  landmark_xy=x["landmark_xy"])
    assert with_lm.shape == base.shape == (1, 24, 64)
    assert (with_lm - base).abs().max() > 1e-3
    moved = run(model, x, img_source=x["img_source"], landmark_tokens=x["landmark_tokens"],
                landmark_xy=x["landmark_xy"].flip(-1))
    assert (moved - with_lm).abs().max() > 1e-4  # positions matter, not only token content


def test_invisible_landmarks_equal_omitted(model):
    x = tiny_inputs(GRID, batch=2, seed=6)
    visible = torch.tensor([True, False, True, True, False])
    kwargs = dict(img_source=x["img_source"])
    masked = run(model, x, **kwargs, landmark_tokens=x["landmark_tokens"], landmark_xy=x["landmark_xy"],
                 landmark_visible=visible[None].expand(2, -1))
    omitted = run(model, x, **kwargs, landmark_tokens=x["landmark_tokens"][:, visible],
                  landmark_xy=x["landmark_xy"][:, visible])
    torch.testing.assert_close(masked, omitted, rtol=0, atol=1e-6)
    none_visible = run(model, x, **kwargs, landmark_tokens=x["landmark_tokens"], landmark_xy=x["landmark_xy"],
                       landmark_visible=torch.zeros(2, 5, dtype=torch.bool))
    torch.testing.assert_close(none_visible, run(model, x, **kwargs), rtol=0, atol=1e-6)


def test_per_sample_visibility_masks_equal_per_sample_omission(model):
    x = tiny_inputs(GRID, batch=2, seed=7)
    visible = torch.tensor([[True, False, True, True, False], [False, True, True, True, True]])
    both = run(model, x, img_source=x["img_source"], landmark_tokens=x["landmark_tokens"],
               landmark_xy=x["landmark_xy"], landmark_visible=visible)
    for b in range(2):
        one = {k: v[b:b + 1] for k, v in x.items()}
        alone = run(model, one, img_source=one["img_source"], landmark_tokens=one["landmark_tokens"][:, visible[b]],
                    landmark_xy=one["landmark_xy"][:, visible[b]])
        torch.testing.assert_close(both[b:b + 1], alone, rtol=0, atol=2e-5)


def test_release_scaling_switch(model):
    x = tiny_inputs(GRID, seed=8)
    lm = dict(img_source=x["img_source"], landmark_tokens=x["landmark_tokens"], landmark_xy=x["landmark_xy"])
    per_axis = run(model, x, **lm)
    release = run(model, x, **lm, release_height_only_scaling=True)
    assert (per_axis - release).abs().max() > 1e-5  # 4x6 grid: the scales differ on x
    square = tiny_inputs((5, 5), seed=8)
    sq = [model(square["img_noisy"], None, square["timesteps"], square["txt"], square["y"], grid_hw=(5, 5),
                landmark_tokens=square["landmark_tokens"], landmark_xy=square["landmark_xy"],
                release_height_only_scaling=flag) for flag in (False, True)]
    torch.testing.assert_close(sq[0], sq[1], rtol=0, atol=0)


# ---- loading -------------------------------------------------------------------------------------------------------

def write_checkpoint(path, state, connector=True):
    tensors = dict(state)
    if connector:
        tensors["connector.global_proj_out.weight"] = torch.randn(16, 40)
        tensors["connector.S.x_embedder.weight"] = torch.randn(32, 40)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def test_load_step1x_checkpoint(tmp_path, model):
    path = write_checkpoint(tmp_path / "lato.safetensors", random_bfl_state_dict())
    loaded = load_dit(path, dtype=torch.float32, config=TINY)
    assert loaded.kind == "step1x_edit" and loaded.has_landmark_in
    assert set(loaded.connector_state) == {"global_proj_out.weight", "S.x_embedder.weight"}
    x = tiny_inputs(GRID, seed=9)
    lm = dict(img_source=x["img_source"], landmark_tokens=x["landmark_tokens"], landmark_xy=x["landmark_xy"])
    torch.testing.assert_close(run(loaded.model, x, **lm), run(model, x, **lm), rtol=0, atol=1e-5)
    prefixed = {f"model.diffusion_model.{k}": v for k, v in random_bfl_state_dict().items()}
    assert load_dit(prefixed, dtype=torch.float32, config=TINY).has_landmark_in


def test_missing_landmark_in_is_flagged_and_loadable_from_pth(tmp_path, model):
    state = random_bfl_state_dict()
    adapter = {k.removeprefix("landmark_in."): state.pop(k) for k in ["landmark_in.weight", "landmark_in.bias"]}
    loaded = load_dit(write_checkpoint(tmp_path / "dit.safetensors", state), dtype=torch.float32, config=TINY)
    assert loaded.kind == "step1x_edit" and not loaded.has_landmark_in and loaded.model.landmark_in is None
    x = tiny_inputs(GRID, seed=10)
    lm = dict(landmark_tokens=x["landmark_tokens"], landmark_xy=x["landmark_xy"])
    with pytest.raises(MissingLandmarkAdapterError, match="landmark_in"):
        run(loaded.model, x, **lm)
    torch.save(adapter, tmp_path / "landmark_in.pth")
    load_landmark_in(loaded.model, tmp_path / "landmark_in.pth")
    torch.testing.assert_close(run(loaded.model, x, **lm), run(model, x, **lm), rtol=0, atol=1e-5)


def test_detect_checkpoint_kind():
    step1x = list(random_bfl_state_dict()) + ["connector.S.x_embedder.weight"]
    flux = [k for k in random_bfl_state_dict() if not k.startswith("landmark_in")] + [
        "guidance_in.in_layer.weight", "guidance_in.in_layer.bias"]
    assert detect_checkpoint_kind(step1x) == "step1x_edit"
    assert detect_checkpoint_kind(f"model.diffusion_model.{k}" for k in step1x) == "step1x_edit"
    assert detect_checkpoint_kind(flux) == "flux"
    assert detect_checkpoint_kind(["encoder.conv_in.weight", "decoder.conv_out.weight"]) == "unknown"


def test_plain_flux_file_is_rejected_clearly(tmp_path):
    state = {k: v for k, v in random_bfl_state_dict().items() if not k.startswith("landmark_in")}
    state["guidance_in.in_layer.weight"] = torch.randn(64, 256)
    state["guidance_in.in_layer.bias"] = torch.randn(64)
    path = write_checkpoint(tmp_path / "flux1-dev.safetensors", state, connector=False)
    assert detect_checkpoint_kind(save_keys(path)) == "flux"
    with pytest.raises(ModelFileError) as err:
        load_dit(path, dtype=torch.float32, config=TINY)
    assert "flux1-dev.safetensors" in str(err.value) and "plain FLUX" in str(err.value)
    assert "guidance_in.in_layer.weight" in str(err.value)


def save_keys(path):
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def test_missing_misshaped_and_truncated_files_fail_clearly(tmp_path):
    state = random_bfl_state_dict()
    del state["double_blocks.1.txt_mlp.2.bias"]
    state["single_blocks.0.linear1.weight"] = torch.randn(3 * 64 + 128, 64)
    state["pos_embed.extra"] = torch.zeros(3)
    path = write_checkpoint(tmp_path / "broken.safetensors", state)
    with pytest.raises(ModelFileError) as err:
        load_dit(path, dtype=torch.float32, config=TINY)
    message = str(err.value)
    assert "broken.safetensors" in message
    assert "missing (1)" in message and "double_blocks.1.txt_mlp.2.bias" in message
    assert "unexpected (1)" in message and "pos_embed.extra" in message
    assert "single_blocks.0.linear1.weight: file [320, 64], expected [448, 64]" in message

    good = write_checkpoint(tmp_path / "good.safetensors", random_bfl_state_dict())
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated.safetensors.*truncated or corrupt"):
        load_dit(truncated, dtype=torch.float32, config=TINY)
    with pytest.raises(ModelFileError, match="not found: .*nowhere.safetensors"):
        load_dit(tmp_path / "nowhere.safetensors", config=TINY)


# ---- dtype ---------------------------------------------------------------------------------------------------------

def test_bf16_on_cpu_close_to_fp32(model):
    x = tiny_inputs(GRID, batch=2, seed=11)
    lm = dict(img_source=x["img_source"], landmark_tokens=x["landmark_tokens"], landmark_xy=x["landmark_xy"])
    ref = run(model, x, **lm)
    bf16 = load_dit(random_bfl_state_dict(), dtype=torch.bfloat16, config=TINY).model
    out = run(bf16, x, **lm)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    err = (out.float() - ref).abs()
    scale = ref.abs().max().item()
    assert err.max().item() < 0.05 * scale and err.mean().item() < 0.01 * scale
