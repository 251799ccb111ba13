"""Kohya LoRA on the tiny DiT: strict loading, merge vs hand-computed weights, peft == merge, unmerge, bad files."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from lato_core.dit import Step1XEditDiT, load_landmark_in
from lato_core.lora import LoraError, apply_lora, load_kohya_lora, lora_key_table
from tiny_dit import TINY, tiny_inputs, tiny_model

GRID = (4, 6)
STRENGTH = 0.7
# Targets: every Linear of the blocks, plus img_in, time_in.in_layer and a full-rank landmark_in (24 -> 64).
EXTRA_TARGETS = ("img_in", "time_in.in_layer", "landmark_in")


def target_paths(model: Step1XEditDiT) -> list[str]:
    return [path for path, m in model.named_modules() if isinstance(m, torch.nn.Linear)
            and (path.startswith(("double_blocks.", "single_blocks.")) or path in EXTRA_TARGETS)]


def make_kohya_lora(model: Step1XEditDiT, seed: int = 3) -> dict[str, torch.Tensor]:
    """Random down/up with ranks 1..4 (landmark_in full rank), per-module alpha stored as fp16 like kohya."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for i, path in enumerate(target_paths(model)):
        layer = model.get_submodule(path)
        rank = layer.in_features if path == "landmark_in" else 1 + i % 4
        name = "lora_unet_" + path.replace(".", "_")
        tensors[f"{name}.lora_down.weight"] = torch.randn(rank, layer.in_features, generator=gen) / layer.in_features
        tensors[f"{name}.lora_up.weight"] = torch.randn(layer.out_features, rank, generator=gen) * 0.5
        tensors[f"{name}.alpha"] = torch.tensor(float(1 + i % 3) * rank / 2, dtype=torch.float16)
    return tensors


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lora") / "lato_tiny.safetensors"
    save_file(make_kohya_lora(tiny_model()), str(path))
    return path


def run(model, inputs):
    with torch.no_grad():
        return model(**inputs, grid_hw=GRID)


def hand_merged_state(model, tensors, strength):
    """W + strength * alpha / rank * up @ down for every target, written out without the library."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for path in target_paths(model):
        name = "lora_unet_" + path.replace(".", "_")
        down, up = tensors[f"{name}.lora_down.weight"], tensors[f"{name}.lora_up.weight"]
        alpha = float(tensors[f"{name}.alpha"])
        state[f"{path}.weight"] = state[f"{path}.weight"] + strength * alpha / down.shape[0] * (up @ down)
    return state


def test_key_table_maps_kohya_names_to_module_paths():
    table = lora_key_table(TINY)
    linears = [p for p, m in Step1XEditDiT(TINY).named_modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(table.values()) == sorted(linears) and len(table) == len(linears) == 35
    assert table["lora_unet_double_blocks_0_img_attn_qkv"] == "double_blocks.0.img_attn.qkv"
    assert table["lora_unet_double_blocks_1_txt_mlp_2"] == "double_blocks.1.txt_mlp.2"
    assert table["lora_unet_single_blocks_1_modulation_lin"] == "single_blocks.1.modulation.lin"
    assert table["lora_unet_final_layer_adaLN_modulation_1"] == "final_layer.adaLN_modulation.1"
    assert table["lora_unet_landmark_in"] == "landmark_in"
    release = lora_key_table()   # 19 * 10 + 38 * 3 block Linears + 9 others
    assert len(release) == 313 and release["lora_unet_single_blocks_37_linear2"] == "single_blocks.37.linear2"


def test_load_reads_ranks_and_alphas(lora_file):
    lora = load_kohya_lora(lora_file, TINY)
    model = tiny_model()
    assert sorted(lora) == sorted(target_paths(model))
    assert lora["landmark_in"].rank == 24 and lora["landmark_in"].down.shape == (24, 24)
    assert {w.rank for w in lora.values()} == {1, 2, 3, 4, 24}
    first = lora["img_in"]   # i = 0: rank 1, alpha 0.5
    assert (first.rank, first.alpha, first.scale) == (1, 0.5, 0.5)


def test_merge_equals_hand_computed_weights_and_outputs(lora_file):
    tensors = make_kohya_lora(tiny_model())
    model, reference = tiny_model(), tiny_model()
    reference.load_state_dict(hand_merged_state(reference, tensors, STRENGTH))
    apply_lora(model, load_kohya_lora(lora_file, TINY), STRENGTH, method="merge")
    merged, expected = model.state_dict(), reference.state_dict()
    assert merged.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(merged[key], expected[key], rtol=1e-6, atol=1e-7, msg=key)
    inputs = tiny_inputs(GRID)
    out, base = run(model, inputs), run(tiny_model(), inputs)
    torch.testing.assert_close(out, run(reference, inputs), rtol=1e-5, atol=1e-5)
    assert (out - base).abs().max() > 0.05   # the LoRA really changes the output


def test_peft_path_equals_merge_path_and_removes_cleanly(lora_file):
    lora, inputs = load_kohya_lora(lora_file, TINY), tiny_inputs(GRID)
    merged = tiny_model()
    apply_lora(merged, lora, STRENGTH, method="merge")
    wrapped = tiny_model()
    base = run(wrapped, inputs)
    handle = apply_lora(wrapped, lora, STRENGTH, method="peft")
    assert type(wrapped.double_blocks[0].img_attn.qkv).__module__.startswith("peft.")
    torch.testing.assert_close(run(wrapped, inputs), run(merged, inputs), rtol=1e-5, atol=1e-5)
    handle.remove()
    assert type(wrapped.double_blocks[0].img_attn.qkv) is torch.nn.Linear and not hasattr(wrapped, "peft_config")
    assert torch.equal(run(wrapped, inputs), base)


def test_strength_zero_is_the_base_model(lora_file):
    model, inputs = tiny_model(), tiny_inputs(GRID)
    apply_lora(model, load_kohya_lora(lora_file, TINY), 0.0)
    base = tiny_model()
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in model.state_dict().items())
    assert torch.equal(run(model, inputs), run(base, inputs))


def test_unmerge_restores_the_base_weights(lora_file):
    lora, base = load_kohya_lora(lora_file, TINY), tiny_model().state_dict()
    model = tiny_model()
    apply_lora(model, lora, STRENGTH).remove()   # subtracts the delta again: fp32 rounding only
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, base[key], rtol=0, atol=1e-6)
    exact = tiny_model()
    apply_lora(exact, lora, STRENGTH, keep_original=True).remove()
    assert all(torch.equal(v, base[k]) for k, v in exact.state_dict().items())
    bf16 = tiny_model().to(torch.bfloat16)   # one bf16 rounding per weight
    apply_lora(bf16, lora, STRENGTH).remove()
    for key, value in bf16.state_dict().items():
        torch.testing.assert_close(value.float(), base[key], rtol=2 ** -7, atol=1e-3, msg=key)


def test_landmark_in_lora_goes_on_top_of_the_adapter_weights(lora_file):
    lora = load_kohya_lora(lora_file, TINY)
    model = tiny_model()
    adapter = {"weight": model.landmark_in.weight.clone(), "bias": model.landmark_in.bias.clone()}
    model.landmark_in = None                      # as a checkpoint without landmark_in.*
    with pytest.raises(LoraError, match="load_landmark_in"):
        apply_lora(model, lora, STRENGTH)
    load_landmark_in(model, adapter)
    apply_lora(model, lora, STRENGTH)
    down, up, alpha = lora["landmark_in"]
    expected = adapter["weight"] + STRENGTH * alpha / 24 * (up @ down)
    torch.testing.assert_close(model.landmark_in.weight, expected, rtol=1e-6, atol=1e-7)


def write_bad(tmp_path, edit) -> str:
    tensors = make_kohya_lora(tiny_model())
    edit(tensors)
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path))
    return str(path)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.update({"lora_unet_double_blocks_7_img_attn_qkv.alpha": torch.tensor(1.0)}),
     r"lora_unet_double_blocks_7_img_attn_qkv.alpha: no DiT Linear is named lora_unet_double_blocks_7_img_attn_qkv"),
    (lambda t: t.pop("lora_unet_single_blocks_0_linear1.alpha"), r"lora_unet_single_blocks_0_linear1: missing alpha"),
    (lambda t: t.update({"lora_unet_img_in.lora_up.weight": torch.zeros(64, 3)}),
     r"lora_unet_img_in: rank mismatch, lora_down has rank 1, lora_up 3"),
    (lambda t: t.update({"lora_unet_txt_in.lora_down.weight": torch.zeros(2, 32)}),
     r"lora_unet_txt_in: missing up, alpha"),
    (lambda t: t.update({"lora_unet_img_in.dora_scale": torch.zeros(64)}),
     r"lora_unet_img_in.dora_scale: unknown entry"),
    (lambda t: t.update({"lora_te1_layers_0_mlp.alpha": torch.tensor(1.0)}), r"text-encoder LoRAs are not supported"),
    (lambda t: t.update({"lora_unet_img_in.lora_down.weight": torch.zeros(1, 60)}),
     r"lora_unet_img_in: delta is 64x60 but img_in is 64x64"),
])
def test_bad_files_raise_errors_naming_file_and_key(tmp_path, edit, message):
    path = write_bad(tmp_path, edit)
    with pytest.raises(LoraError, match=message) as info:
        load_kohya_lora(path, TINY)
    assert path in str(info.value)


def test_unreadable_and_foreign_files(tmp_path):
    with pytest.raises(LoraError, match="not found"):
        load_kohya_lora(tmp_path / "nope.safetensors", TINY)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(LoraError, match="not a readable"):
        load_kohya_lora(garbage, TINY)
    with pytest.raises(LoraError, match="no DiT Linear"):   # release-sized names do not fit the tiny DiT
        load_kohya_lora({"lora_unet_double_blocks_18_img_mod_lin.alpha": torch.tensor(1.0)}, TINY)
    with pytest.raises(ValueError, match="method"):
        apply_lora(tiny_model(), load_kohya_lora(write_bad(tmp_path, lambda t: None), TINY), method="lokr")


def test_fp8_layers_take_the_lora_through_peft_not_merge(lora_file):
    from lato_core.memory import Fp8Linear, cast_for_storage

    lora, inputs, strength = load_kohya_lora(lora_file, TINY), tiny_inputs(GRID), 2.0
    model = cast_for_storage(tiny_model(), "fp8_e4m3")
    with pytest.raises(LoraError, match="fp8"):
        apply_lora(model, lora, strength, method="merge")
    base = run(model, inputs)
    handle = apply_lora(model, lora, strength, method="peft")
    qkv = model.double_blocks[0].img_attn.qkv
    assert isinstance(qkv.get_base_layer(), Fp8Linear) and qkv.lora_A["lato_lora"].weight.dtype == torch.bfloat16
    reference = run(apply_lora(tiny_model(), lora, strength).model, inputs)   # fp32, merged

    def error(out):
        return (out.float() - reference).norm() / reference.norm()
    assert error(run(model, inputs)) < 0.08     # fp8 storage tolerance, as in test_memory (measured ~0.027)
    assert error(base) > 0.15                   # without the LoRA it is far off (measured ~0.21)
    handle.remove()
    assert torch.equal(run(model, inputs), base)


def test_release_ignored_keys_are_skipped_and_named(tmp_path, caplog):
    """The release merges nothing into final_layer.* or connector.*: those entries are skipped, with a warning."""
    model = tiny_model()
    tensors = make_kohya_lora(model)
    extra = {"lora_unet_final_layer_linear": (64, 64), "lora_unet_connector_S_input_embedder": (32, 64)}
    for name, (out_features, in_features) in extra.items():
        tensors[f"{name}.lora_down.weight"] = torch.ones(2, in_features)
        tensors[f"{name}.lora_up.weight"] = torch.ones(out_features, 2)
        tensors[f"{name}.alpha"] = torch.tensor(2.0)
    path = tmp_path / "with_ignored.safetensors"
    save_file(tensors, str(path))
    with caplog.at_level("WARNING", logger="lato_core.lora"):
        lora = load_kohya_lora(path, TINY)
    assert "final_layer.linear" not in lora and not any(p.startswith("connector") for p in lora)
    assert set(lora) == set(target_paths(model))
    assert "skipped 6 keys" in caplog.text and "lora_unet_final_layer_linear.alpha" in caplog.text
    assert "lora_unet_connector_S_input_embedder.lora_down.weight" in caplog.text
    merged = tiny_model()
    apply_lora(merged, lora, STRENGTH)
    assert torch.equal(merged.final_layer.linear.weight, model.final_layer.linear.weight)
