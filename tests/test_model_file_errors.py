"""Broken model files get a ModelFileError naming the file, its folder and what is wrong, never a raw Python
error and never advice to load unsafely (issue 12's model-file corpus; the real server case is in test_lato_comfy)."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from lato_core.dit.loading import read_adapter_file
from lato_core.engine.files import config_sections, read_header
from lato_core.engine.model import load_lato_model
from lato_core.errors import ModelFileError
from tests import tiny_lato


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo ran > /dev/null",))


def _write(path, builder):
    builder(path)
    return path


ADAPTERS = {
    "empty.pth": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "tensor_only.pth": (lambda p: torch.save(torch.zeros(3, 3), p), "holds a Tensor, not a dict of tensors"),
    "malicious.pth": (lambda p: p.write_bytes(pickle.dumps({"weight": RunsCode()})), "holds code or objects"),
    "truncated.pth": (lambda p: p.write_bytes(b"PK\x03\x04 not a zip"), "not a readable torch file"),
    "corrupt.safetensors": (lambda p: p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"),
                            "not a readable .safetensors file"),
    "nested.pth": (lambda p: torch.save({"weight": {"w": torch.zeros(1)}}, p), "not a dict of tensors"),
}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_bad_adapter_files_are_named_and_never_unpickled_unsafely(tmp_path, name):
    build, reason = ADAPTERS[name]
    path = _write(tmp_path / name, build)
    with pytest.raises(ModelFileError) as info:
        read_adapter_file(str(path))
    message = str(info.value)
    assert name in message and "models/lato/" in message and reason in message, message
    assert "weights_only=False" not in message and "likely succeed" not in message


def test_adapter_missing_and_dit_with_broken_metadata(tmp_path):
    with pytest.raises(ModelFileError, match=r"nowhere\.pth \(landmark adapter, models/lato/\) not found"):
        read_adapter_file(str(tmp_path / "nowhere.pth"))
    state = {k: v for k, v in tiny_lato.connector_state().items()}
    state["img_in.weight"] = torch.zeros(4, 4)
    path = tmp_path / "bad_meta.safetensors"
    save_file(state, str(path), metadata={"lato_config": "{not json"})
    shapes, metadata = read_header(path)
    with pytest.raises(ModelFileError, match=r"'lato_config' metadata of .*bad_meta\.safetensors is not a valid"):
        config_sections(path, metadata)


def test_a_dit_missing_its_adapter_width_or_with_a_wrong_one(tmp_path):
    no_adapter = tiny_lato.write_dit(tmp_path / "lato.safetensors", with_landmark_in=False)
    wrong = tmp_path / "landmark_in_wrong.pth"
    torch.save({"weight": torch.zeros(64, 7), "bias": torch.zeros(63)}, wrong)
    with pytest.raises(ModelFileError) as info:
        load_lato_model(no_adapter, landmark_adapter=wrong, storage="fp32")
    assert "landmark_in_wrong.pth" in str(info.value) and "bias: file [63], expected [64]" in str(info.value)
