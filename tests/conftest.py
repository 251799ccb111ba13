"""Shared fixtures: the sample photos the installed packages ship, as IMAGE-shaped tensors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb)).float()[None] / 255.0


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    from skimage import data
    return data.astronaut()


@pytest.fixture(scope="session")
def hopper_rgb() -> np.ndarray:
    import matplotlib.cbook as cbook
    return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))


@pytest.fixture(scope="session")
def astronaut(astronaut_rgb) -> torch.Tensor:
    return _tensor(astronaut_rgb)


@pytest.fixture(scope="session")
def hopper(hopper_rgb) -> torch.Tensor:
    return _tensor(hopper_rgb)


@pytest.fixture(scope="session")
def astronaut_face(astronaut):
    from lato_core.face.detect import detect_faces
    return detect_faces(astronaut[0])[0]


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A real ComfyUI with this pack loaded, on loopback; stopped (by process group) after the module."""
    from scripts.comfy_server import ComfyServer

    server = ComfyServer(tmp_path_factory.mktemp("comfy"))
    server.start()
    yield server
    server.stop()
