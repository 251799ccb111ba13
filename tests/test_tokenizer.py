"""LaTo landmark tokenizer: parity with a from-the-formulas reference, strict loading, VQ maths, training."""
from __future__ import annotations

import math

import pytest
import torch

from lato_core.errors import ModelFileError
import torch.nn.functional as F
from safetensors.torch import save_file

from lato_core.errors import LandmarkFormatError
from lato_core.tokenizer import (LandmarkTokenizer, TokenizerConfig, VectorQuantizer,
                                 expected_shapes, infer_config, load_tokenizer, points_to_tokens_input,
                                 read_header, tokens_input_to_points)
from tests.tiny_tokenizer import TINY, synthetic_landmarks, tiny_config, tiny_tokenizer


# --- functional reference, written from the formulas -------------------------------------------------
def _dilation(channels):
    return max(1, TINY.dilation_reference // channels - 1)


def _norm(sd, key, x):
    return F.group_norm(x, 32, sd[key + ".weight"], sd[key + ".bias"], eps=1e-6)


def _conv(sd, key, x, dilation=1):
    weight = sd[key + ".weight"]
    pad = dilation * (weight.shape[-1] // 2)
    return F.conv1d(x, weight, sd[key + ".bias"], padding=pad, dilation=dilation)


def _res(sd, p, x):
    d = _dilation(sd[p + ".block.2.weight"].shape[0])
    h = _conv(sd, p + ".block.2", F.silu(_norm(sd, p + ".block.0", x)), d)
    h = _conv(sd, p + ".block.5", F.silu(_norm(sd, p + ".block.3", h)))
    return (_conv(sd, p + ".conv_short", x) if p + ".conv_short.weight" in sd else x) + h


def _attn(sd, p, x):
    h = _norm(sd, p + ".norm", x)
    q, k, v = (_conv(sd, f"{p}.{n}", h) for n in "qkv")
    weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(x.shape[1]), dim=-1)
    return x + _conv(sd, p + ".proj_out", torch.einsum("bij,bcj->bci", weights, v))


def _stack(sd, p, x):
    x = _conv(sd, p + ".conv_in", x)
    for i in range(3):
        x = _res(sd, f"{p}.resnet1.{i}", x)
    x = _res(sd, p + ".resnet2", _attn(sd, p + ".attn1", x))
    for i in range(3):
        x = _res(sd, f"{p}.resnet3.{i}", x)
    return _conv(sd, p + ".conv_out", _attn(sd, p + ".attn2", x))


def _argmin_codes(z, book):
    flat = z.transpose(1, 2).reshape(-1, z.shape[1])
    return ((flat[:, None, :] - book[None]) ** 2).sum(-1).argmin(1).reshape(z.shape[0], z.shape[2])


@pytest.fixture(scope="module")
def model():
    return tiny_tokenizer(seed=0)


@pytest.fixture(scope="module")
def points():
    return synthetic_landmarks(3, seed=5)


def test_encoder_indices_and_decoder_match_functional_reference(model, points):
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    z_ref = _stack(sd, "encoder", points)
    idx_ref = _argmin_codes(z_ref, sd["vq.codebook"])
    with torch.no_grad():
        z = model.encode_continuous(points)
    idx, codes = model.encode(points)
    assert torch.allclose(z, z_ref, atol=1e-5, rtol=1e-4), (z - z_ref).abs().max()
    assert torch.equal(idx, idx_ref) and idx.unique().numel() > 20
    assert torch.equal(codes, sd["vq.codebook"][idx_ref])
    with torch.no_grad():
        recon = model.decode(codes)
        out = model(points)
    recon_ref = _stack(sd, "decoder", codes.transpose(1, 2))
    assert torch.allclose(recon, recon_ref, atol=1e-5, rtol=1e-4)
    assert torch.allclose(out.reconstruction, recon_ref, atol=1e-5, rtol=1e-4)
    assert torch.allclose(out.recon_loss, (recon_ref - points).abs().mean(), atol=1e-6)
    assert torch.equal(model.decode(idx), recon)


def test_release_layout_sizes_and_dilations():
    cfg = TokenizerConfig.release()
    shapes = expected_shapes(cfg)
    assert shapes["vq.codebook"] == (8192, 3072)
    assert shapes["encoder.conv_in.weight"] == (128, 2, 3) and shapes["encoder.conv_out.weight"] == (3072, 512, 3)
    assert shapes["encoder.resnet2.conv_short.weight"] == (512, 128, 1)
    assert shapes["decoder.conv_in.weight"] == (512, 3072, 3) and shapes["decoder.conv_out.weight"] == (2, 128, 3)
    assert shapes["decoder.resnet2.conv_short.weight"] == (128, 512, 1)
    for stack in ("encoder", "decoder"):
        for i in range(3):
            assert {f"{stack}.resnet1.{i}.block.{j}.weight" for j in (0, 2, 3, 5)} <= shapes.keys()
        assert {f"{stack}.attn2.{n}.weight" for n in ("norm", "q", "k", "v", "proj_out")} <= shapes.keys()
    assert not [k for k in shapes if "conv_short" in k and "resnet2" not in k]
    assert abs(sum(math.prod(s) for s in shapes.values()) / 44.6e6 - 1) < 0.01  # "~44.6M values"
    assert cfg.dilation(128) == 3 and cfg.dilation(512) == 1
    with torch.device("meta"):
        release = LandmarkTokenizer(cfg)
    assert release.encoder.resnet1[0].block[2].dilation == (3,) and release.encoder.resnet1[0].block[2].padding == (3,)
    assert release.encoder.resnet3[0].block[2].dilation == (1,) and release.decoder.resnet3[2].block[2].dilation == (3,)
    assert release.encoder.attn1.norm.eps == 1e-6 and release.encoder.resnet2.block[3].num_groups == 32


def _save(model, path, drop=(), extra=None, reshape=None):
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if k not in drop}
    tensors.update(extra or {})
    for key, shape in (reshape or {}).items():
        tensors[key] = torch.zeros(shape)
    save_file(tensors, str(path))
    return path


def test_round_trip_through_safetensors(model, points, tmp_path):
    path = _save(model, tmp_path / "model.safetensors")
    assert infer_config(read_header(path)).architecture == TINY.architecture
    loaded = load_tokenizer(path, config=TINY)
    assert not loaded.training and loaded.has_decoder
    idx, codes = model.encode(points)
    idx2, codes2 = loaded.encode(points)
    assert torch.equal(idx, idx2) and torch.equal(codes, codes2)
    assert torch.equal(model.decode(codes), loaded.decode(codes2))
    # Encoder + codebook only: loads, encodes identically, refuses to decode.
    decoder_keys = [k for k in model.state_dict() if k.startswith("decoder.")]
    enc_only = _save(model, tmp_path / "enc.safetensors", drop=decoder_keys)
    lean = load_tokenizer(enc_only, config=TINY)
    assert not lean.has_decoder and torch.equal(lean.encode(points)[0], idx)
    with pytest.raises(RuntimeError, match="without decoder"):
        lean.decode(codes)
    with pytest.raises(match=r"missing \(82\):\n    decoder\.attn1\.k\.bias"):
        load_tokenizer(enc_only, config=TINY, decoder=True)
    skipped = load_tokenizer(path, config=TINY, decoder=False)  # full file, decoder left out on purpose
    assert not skipped.has_decoder and torch.equal(skipped.encode(points)[1], codes)
    half = load_tokenizer(path, config=TINY, dtype=torch.bfloat16)
    half_idx, half_codes = half.encode(points)
    assert half_codes.dtype == torch.bfloat16 and torch.equal(half_codes, half.vq.codebook[half_idx])
    assert torch.equal(half.vq.codebook, model.vq.codebook.to(torch.bfloat16))


BAD_FILES = {
    "missing": (dict(drop=["encoder.attn1.q.weight"]), ["missing (1):\n    encoder.attn1.q.weight"]),
    "extra": (dict(extra={"vq.code_count": torch.ones(64)}), ["unexpected (1):\n    vq.code_count"]),
    "shape": (dict(reshape={"encoder.resnet3.1.block.2.weight": (64, 64, 5)}),
              ["wrong shape (1):\n    encoder.resnet3.1.block.2.weight: file [64, 64, 5], expected [64, 64, 3]"]),
    "all": (dict(drop=["vq.codebook"], extra={"foo": torch.ones(1)}, reshape={"decoder.attn1.k.bias": (3,)}),
            ["missing (1):\n    vq.codebook", "unexpected (1):\n    foo",
             "wrong shape (1):\n    decoder.attn1.k.bias: file [3], expected [64]"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_layouts_fail_with_one_clear_message(model, tmp_path, case):
    changes, expected_lines = BAD_FILES[case]
    path = _save(model, tmp_path / f"{case}.safetensors", **changes)
    for config in (TINY, None):  # verified against a given config, and with sizes inferred from the file
        with pytest.raises(ModelFileError) as info:
            load_tokenizer(path, config=config)
        message = str(info.value)
        assert f"'{path}'" in message and "Po_VQVAE/model.safetensors" in message
        for line in expected_lines:
            assert line in message, message


@pytest.mark.parametrize("damage", ["truncated", "garbage", "absent"])
def test_unreadable_files_fail_clearly(model, tmp_path, damage):
    path = _save(model, tmp_path / "model.safetensors")
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a safetensors file" * 40)
    else:
        path = tmp_path / "nowhere.safetensors"
    with pytest.raises(ModelFileError) as info:
        load_tokenizer(path, config=TINY)
    message = str(info.value)
    assert str(path) in message
    assert ("does not exist" if damage == "absent" else "truncated or corrupt") in message


def test_point_normalisation(model):
    pixels = torch.zeros(2, 68, 2)
    pixels[0, 0] = torch.tensor([0.0, 0.0])
    pixels[0, 1] = torch.tensor([512.0, 512.0])
    pixels[1, 2] = torch.tensor([256.0, 128.0])
    x = points_to_tokens_input(pixels)
    assert x.shape == (2, 2, 68)
    assert x[0, :, 0].tolist() == [-1.0, -1.0] and x[0, :, 1].tolist() == [1.0, 1.0]
    assert x[1, :, 2].tolist() == [0.0, -0.5]
    assert torch.allclose(tokens_input_to_points(x), pixels)
    assert points_to_tokens_input(pixels[0].numpy()).shape == (1, 2, 68)
    with pytest.raises(LandmarkFormatError):
        points_to_tokens_input(torch.zeros(2, 67, 2))
    with pytest.raises(LandmarkFormatError, match=r"\(batch, 2, 68\)"):
        model.encode(torch.zeros(1, 68, 2))


# --- vector quantiser ----------------------------------------------------------------------------------
CORNERS = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


def _quantizer(**knobs):
    vq = VectorQuantizer(4, 2, **knobs)
    vq.codebook.copy_(CORNERS)
    return vq


def _as_z(rows):  # (N, 2) vectors -> (1, 2, N) encoder-shaped input
    return torch.tensor(rows).t()[None].contiguous()


def test_indices_are_the_squared_l2_argmin_in_fp32():
    torch.manual_seed(1)
    vq = VectorQuantizer(64, 48).eval()
    vq.codebook.normal_()
    z = torch.randn(2, 48, 68)
    out = vq(z)
    assert torch.equal(out.indices, _argmin_codes(z, vq.codebook))
    assert torch.equal(out.quantized, vq.codebook[out.indices].transpose(1, 2))
    # bf16 weights: distances are still taken in fp32 over the bf16 values.
    vq16 = vq.to(torch.bfloat16)
    z16 = z.to(torch.bfloat16)
    assert torch.equal(vq16(z16).indices, _argmin_codes(z16.float(), vq16.codebook.float()))


def test_ema_update_follows_the_decay_formula_by_hand():
    vq = _quantizer(ema_decay=0.9, reset_interval=1000).train()
    vq(_as_z([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0]]))  # codes 0, 0, 1
    # count <- 0.9*1 + 0.1*n ; sum <- 0.9*code + 0.1*sum(x) ; code <- sum / count
    assert torch.allclose(vq.codebook[0], torch.tensor([0.1, 0.1]) / 1.1)
    assert torch.allclose(vq.codebook[1], torch.tensor([9.0 + 0.9, 0.1]) / 1.0)
    assert torch.equal(vq.codebook[2:], CORNERS[2:])
    vq(_as_z([[2.0, 2.0]]))  # code 0 again, second step from the stored statistics
    count0, sum0 = 0.9 * 1.1 + 0.1, 0.9 * torch.tensor([0.1, 0.1]) + 0.1 * torch.tensor([2.0, 2.0])
    assert torch.allclose(vq.codebook[0], sum0 / count0)
    assert torch.allclose(vq.ema_count, torch.tensor([count0, 0.9 * 1.0, 0.81, 0.81]))
    assert torch.allclose(vq.codebook[1], torch.tensor([9.9, 0.1]))  # unused: sum/count ratio unchanged
    before = vq.codebook.clone()
    vq.eval()(_as_z([[2.0, 2.0]]))
    assert torch.equal(vq.codebook, before)  # no updates outside training


def test_dead_code_reset_replaces_only_unused_codes():
    torch.manual_seed(0)
    vq = _quantizer(ema_decay=0.9, reset_interval=2).train()
    twin = _quantizer(ema_decay=0.9, reset_interval=1000).train()
    first, second = _as_z([[1.0, 0.0], [9.0, 1.0]]), _as_z([[1.0, 1.0], [0.5, 0.5], [2.0, 1.0], [1.5, 0.0]])
    for batch in (first, second):
        vq(batch)
        twin(batch)
        if batch is first:
            assert torch.equal(vq.codebook[2:], CORNERS[2:])  # window not over yet
    assert torch.allclose(vq.codebook[:2], twin.codebook[:2])  # codes 0 and 1 were used: plain EMA
    batch_rows = second[0].t()
    for row in vq.codebook[2:]:  # codes 2 and 3 were never used: now rows of the last batch
        assert any(torch.equal(row, candidate) for candidate in batch_rows)
    assert not torch.equal(vq.codebook[2], vq.codebook[3])
    assert vq.ema_count[2:].tolist() == [1.0, 1.0] and vq.steps_in_window == 0
    assert vq.window_usage.sum() == 0


def test_commitment_loss_and_straight_through_gradient():
    torch.manual_seed(2)
    vq = VectorQuantizer(16, 8, commitment_beta=0.3).eval()
    vq.codebook.normal_()
    z = torch.randn(2, 8, 5, requires_grad=True)
    out = vq(z)
    chosen = vq.codebook[out.indices].transpose(1, 2)
    assert torch.allclose(out.commit_loss, 0.3 * ((z.detach() - chosen) ** 2).mean())
    assert torch.allclose(out.quantized, chosen, atol=1e-6)
    upstream = torch.randn_like(z)
    (out.quantized * upstream).sum().backward()
    assert torch.equal(z.grad, upstream)  # identity gradient through the quantiser
    z.grad = None
    out.commit_loss.backward()
    assert torch.allclose(z.grad, 0.3 * 2 * (z.detach() - chosen) / z.numel())


def test_reconstruction_gradient_reaches_the_encoder():
    model = tiny_tokenizer(seed=3).train()
    out = model(synthetic_landmarks(4, seed=9))
    out.recon_loss.backward()
    grad = model.encoder.conv_in.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert model.vq.codebook.grad is None  # the codebook learns by EMA only


def test_short_training_loop_lowers_reconstruction_error():
    torch.manual_seed(0)
    model = LandmarkTokenizer(tiny_config(reset_interval=25)).train()  # zero codebook: initialised from data
    held_out = synthetic_landmarks(64, seed=1000)

    def held_out_l1():
        model.eval()
        with torch.no_grad():
            value = model(held_out).recon_loss.item()
        model.train()
        return value

    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model(synthetic_landmarks(16, seed=0))  # first step: data-dependent codebook init
    start = held_out_l1()
    for step in range(100):
        out = model(synthetic_landmarks(16, seed=step + 1))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    end = held_out_l1()
    assert end < 0.4 * start, (start, end)  # seen: 0.51 -> 0.07
    assert torch.isfinite(model.vq.codebook).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(model, points):
    gpu = tiny_tokenizer(seed=0).cuda()
    idx, codes = gpu.encode(points)  # CPU input is moved to the model's device
    assert idx.device.type == "cuda"
    ref_idx, ref_codes = model.encode(points)
    assert (idx.cpu() == ref_idx).float().mean() > 0.95
