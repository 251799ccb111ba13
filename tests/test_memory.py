"""fp8 storage with per-layer upcast, block-wise offload and the weight-size estimate, on the tiny DiT (CPU)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lato_core.dit import DiTConfig
from lato_core.memory import BlockOffloader, Fp8Linear, cast_for_storage, estimate_weight_bytes
from tiny_dit import TINY, tiny_inputs, tiny_model

GRID = (4, 6)
BLOCKS = ["double_blocks.0", "double_blocks.1", "single_blocks.0", "single_blocks.1"]


def run(model, inputs):
    with torch.no_grad():
        return model(**inputs, grid_hw=GRID).float()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def block_linears(model):
    return {p: m for p, m in model.named_modules()
            if isinstance(m, nn.Linear) and p.startswith(("double_blocks.", "single_blocks."))}


def test_bf16_is_the_default_storage():
    model = cast_for_storage(tiny_model())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16} and model.dtype == torch.bfloat16


def test_fp8_really_stores_float8_weights():
    model = cast_for_storage(tiny_model(), "fp8_e4m3")
    linears = block_linears(model)
    assert len(linears) == 2 * 10 + 2 * 3 and all(isinstance(m, Fp8Linear) for m in linears.values())
    for layer in linears.values():
        assert layer.weight.dtype == torch.float8_e4m3fn and layer.weight.element_size() == 1
        assert layer.weight.untyped_storage().nbytes() == layer.weight.numel()
        assert layer.weight_scale.dtype == torch.float32 and layer.weight_scale.numel() == 1
        assert layer.bias.dtype == torch.bfloat16
    # embedders, final layer, landmark_in and norm scales stay in the compute dtype
    assert model.dtype == torch.bfloat16 and type(model.img_in) is nn.Linear
    assert model.landmark_in.weight.dtype == torch.bfloat16
    assert model.double_blocks[0].img_attn.norm.query_norm.scale.dtype == torch.bfloat16
    fp8_bytes = sum(m.weight.numel() * m.weight.element_size() for m in linears.values())
    bf16_bytes = sum(m.weight.numel() * 2 for m in block_linears(cast_for_storage(tiny_model())).values())
    assert fp8_bytes * 2 == bf16_bytes


def test_fp8_output_is_close_to_fp32_and_bf16():
    inputs = tiny_inputs(GRID, batch=2)
    reference = run(tiny_model(), inputs)
    bf16 = run(cast_for_storage(tiny_model(), "bf16"), inputs)
    fp8 = run(cast_for_storage(tiny_model(), "fp8_e4m3"), inputs)
    # e4m3 keeps 3 mantissa bits (<= 6.25% per weight); errors average out over the layers
    assert relative_error(bf16, reference) < 0.02
    assert relative_error(fp8, reference) < 0.08
    assert relative_error(fp8, bf16) < 0.08


def test_per_layer_upcast_keeps_no_full_precision_copy():
    model = cast_for_storage(tiny_model(), "fp8_e4m3")
    run(model, tiny_inputs(GRID))
    for layer in block_linears(model).values():
        assert set(layer._parameters) == {"weight", "bias"} and set(layer._buffers) == {"weight_scale"}
        assert layer.weight.dtype == torch.float8_e4m3fn
        big = [name for name, value in vars(layer).items()
               if isinstance(value, torch.Tensor) and value.numel() == layer.weight.numel()]
        assert big == []


def test_fp8_single_layer_matches_dequantized_math():
    linear = nn.Linear(64, 32).requires_grad_(False)
    layer = Fp8Linear.from_linear(linear, torch.float32)
    x = torch.randn(5, 64)
    expected = x @ (layer.weight.float() * layer.weight_scale).T + linear.bias
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    assert relative_error(layer(x), linear(x)) < 0.05


def test_fp8_back_to_bf16_dequantizes():
    inputs = tiny_inputs(GRID)
    model = cast_for_storage(tiny_model(), "fp8_e4m3")
    fp8 = run(model, inputs)
    cast_for_storage(model, "bf16")
    assert not any(isinstance(m, Fp8Linear) for m in model.modules())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert relative_error(run(model, inputs), fp8) < 0.02
    with pytest.raises(ValueError, match="storage"):
        cast_for_storage(model, "int4")


class Watch:
    """Records which blocks the offloader holds on the compute device while each block runs."""

    def __init__(self, model, offloader):
        self.seen = []
        self.hooks = [block.register_forward_pre_hook(lambda m, a, name=name: self.seen.append(
            (name, set(offloader.resident), next(m.parameters()).device.type)))
            for name, block in offloader.blocks.items()]   # run after the offloader's own pre-hook


def test_offloaded_model_gives_identical_outputs_and_lends_one_block_at_a_time():
    inputs = tiny_inputs(GRID)
    expected = run(tiny_model(), inputs)
    model = tiny_model()
    offloader = BlockOffloader(model, device="cpu")
    watch = Watch(model, offloader)
    assert torch.equal(run(model, inputs), expected)
    assert [name for name, _, _ in watch.seen] == BLOCKS
    assert all(resident == {name} for name, resident, _ in watch.seen)
    assert list(offloader.events) == [(kind, name) for name in BLOCKS for kind in ("load", "offload")]
    assert offloader.resident == set() and offloader._storage == {}
    for block in offloader.blocks.values():   # blocks sit on the storage device between calls
        assert {p.device for p in block.parameters()} == {torch.device("cpu")}
    assert torch.equal(run(model, inputs), expected)   # a second call works the same
    for hook in watch.hooks:
        hook.remove()
    offloader.remove()
    assert all(not b._forward_pre_hooks and not b._forward_hooks for b in offloader.blocks.values())
    events = len(offloader.events)
    assert torch.equal(run(model, inputs), expected) and len(offloader.events) == events


def test_offloader_returns_a_block_even_when_its_forward_fails():
    model = tiny_model()
    offloader = BlockOffloader(model, device="cpu")
    block = model.single_blocks[0]
    block.forward = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        run(model, tiny_inputs(GRID))
    assert offloader.resident == set() and offloader.events[-1] == ("offload", "single_blocks.0")


def test_offload_with_fp8_and_peft_lora_matches_resident_model():
    from lato_core.lora import apply_lora, load_kohya_lora
    from test_lora import make_kohya_lora

    lora = load_kohya_lora(make_kohya_lora(tiny_model()), TINY)
    inputs = tiny_inputs(GRID)

    def build():
        model = cast_for_storage(tiny_model(), "fp8_e4m3")
        apply_lora(model, lora, 0.5, method="peft")
        return model

    expected = run(build(), inputs)
    model = build()
    with BlockOffloader(model, device="cpu") as offloader:
        assert torch.equal(run(model, inputs), expected)
        assert len(offloader.events) == 2 * len(BLOCKS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_offloader_moves_blocks_to_the_gpu_only_during_their_forward():
    inputs = tiny_inputs(GRID)
    expected = run(tiny_model(), inputs)
    model = tiny_model()
    offloader = BlockOffloader(model, device="cuda", pin_memory=True)
    watch = Watch(model, offloader)
    out = run(model, {k: v.cuda() for k, v in inputs.items()})
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-3, atol=1e-3)
    assert all(device == "cuda" for _, _, device in watch.seen)
    assert model.img_in.weight.is_cuda and not model.double_blocks[0].img_attn.qkv.weight.is_cuda


def test_weight_bytes_of_the_release_dit():
    release = DiTConfig.release()
    dit_params, landmark_in_params = 11_891_178_560, 3072 * 3072 + 3072
    bf16 = estimate_weight_bytes(release, "bf16")
    assert bf16 == 2 * (dit_params + landmark_in_params)   # ~23.8 GB
    assert abs(bf16 / 2 - 11.89e9) / 11.89e9 < 2e-3
    fp8 = estimate_weight_bytes(release, "fp8_e4m3")
    assert 0.5 < fp8 / bf16 < 0.504   # ~12.0 GB: embedders, final layer, landmark_in, biases stay bf16
    assert estimate_weight_bytes(release, "fp32") == 2 * bf16


def test_weight_bytes_match_a_cast_model():
    for storage in ("bf16", "fp8_e4m3", "fp32"):
        model = cast_for_storage(tiny_model(), storage)
        actual = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
        assert estimate_weight_bytes(TINY, storage) == actual, storage
