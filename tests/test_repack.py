"""python -m lato_core.repack: the released adapter pickle, tokenizer folder and DiT as single safetensors files that
the same loaders take, with the same numbers (the DiT within fp8's rounding)."""
from __future__ import annotations

import shutil

import pytest
import torch
from safetensors import safe_open

from lato_core.engine.files import METADATA_KEY
from lato_core.engine.model import load_lato_model
from lato_core.repack import main as repack
from lato_core.tokenizer.loading import load_tokenizer, points_to_tokens_input
from tests.release_fixtures import GRID, NOISY, ROOT, fixture
from tests.test_release_parity import forward


def test_adapter_repack_equals_the_pickle(tmp_path, capsys):
    target = tmp_path / "landmark_in.safetensors"
    assert repack(["adapter", str(ROOT / "dit" / "landmark_in.pth"), str(target)]) == 0
    assert "wrote" in capsys.readouterr().out
    pickle = torch.load(ROOT / "dit" / "landmark_in.pth", weights_only=True)
    with safe_open(str(target), "pt") as handle:
        assert set(handle.keys()) == {"weight", "bias"}
        for key in ("weight", "bias"):
            assert torch.equal(handle.get_tensor(key), pickle[key])


def test_tokenizer_folder_becomes_one_file_with_the_same_codes(tmp_path):
    folder = tmp_path / "Po_VQVAE"
    folder.mkdir()
    shutil.copyfile(ROOT / "tokenizer" / "tokenizer.safetensors", folder / "model.safetensors")
    target = tmp_path / "lato_tokenizer.safetensors"
    assert repack(["tokenizer", str(folder), str(target)]) == 0
    points = points_to_tokens_input(fixture("tokenizer", "inputs.safetensors")["landmarks"], 512.0)
    codes, _ = load_tokenizer(target, decoder=False).encode(points)
    assert torch.equal(codes, fixture("tokenizer", "outputs.safetensors")["codes"])


def test_dit_repack_is_fp8_carries_its_config_and_loads_in_the_same_loader(tmp_path):
    source = tmp_path / "lato.safetensors"
    shutil.copyfile(ROOT / "dit" / "dit.safetensors", source)
    (tmp_path / "lato.safetensors.lato_config.json").write_text(
        '{"dit": {"axes_dim": [4, 6, 6]}, "connector": {"num_heads": 4}}')
    target = tmp_path / "lato_fp8.safetensors"   # no sidecar beside it: the metadata says it all
    assert repack(["dit", str(source), str(target)]) == 0
    with safe_open(str(target), "pt") as handle:
        assert METADATA_KEY in handle.metadata()
        assert handle.get_slice("double_blocks.0.img_attn.qkv.weight").get_dtype() == "F8_E4M3"
        assert handle.get_slice("double_blocks.0.img_attn.norm.query_norm.scale").get_dtype() == "F32"
        assert handle.get_slice("connector.S.input_embedder.weight").get_dtype() == "F32"
    lato = load_lato_model(target, storage="fp32", compute_dtype=torch.float32)
    inputs, outputs = fixture("dit", "inputs_sq.safetensors"), fixture("dit", "outputs_sq.safetensors")
    out = forward(lato, inputs, inputs["t_vec_t0"])
    ref = outputs["fwd_t0"]
    # e4m3 keeps 3 mantissa bits: one rounding moves a weight by up to 6%, about 3.6% RMS; allowed 10% RMS.
    assert (out - ref).pow(2).mean().sqrt() < 0.10 * ref.pow(2).mean().sqrt()
    assert not torch.allclose(out, ref, atol=1e-4)   # it really is the rounded model


def test_bad_repack_inputs_fail_with_the_files_name(tmp_path, capsys):
    empty = tmp_path / "landmark_in.pth"
    empty.write_bytes(b"")
    assert repack(["adapter", str(empty), str(tmp_path / "x.safetensors")]) == 2
    assert "landmark_in.pth" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        repack(["dit", "a", "b", "--fp8", "e3m4"])
