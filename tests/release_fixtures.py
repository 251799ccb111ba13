"""The LaTo release's own numbers on tiny weights (../shared/fixtures/lato_release), installed the way a user
installs model files: copied into a models/ folder, where the pack's node-facing loaders read them.

The tiny DiT's 16-wide heads cannot tell its RoPE axes or the connector's heads from shapes, so the copy gets
the sidecar a user would write (engine.files.SIDECAR_SUFFIX) with the fixture README's config.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lato_core.engine.files import SIDECAR_SUFFIX

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "lato_release"
RELEASE_TINY_CONFIG = {"dit": {"axes_dim": [4, 6, 6]}, "connector": {"num_heads": 4}}
GRID = (4, 4)
NOISY = GRID[0] * GRID[1]


def fixture(part: str, name: str) -> dict[str, torch.Tensor]:
    path = ROOT / part / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the release fixtures live in shared/ beside the repository")
    return load_file(str(path))


def install_dit(models: Path, with_landmark_in: bool = True) -> dict[str, Path]:
    """lato.safetensors (+ its sidecar) in models/diffusion_models/, landmark_in.pth in models/lato/."""
    dit = models / "diffusion_models" / ("lato_release_tiny.safetensors" if with_landmark_in
                                          else "lato_release_tiny_no_adapter.safetensors")
    dit.parent.mkdir(parents=True, exist_ok=True)
    if with_landmark_in:
        shutil.copyfile(ROOT / "dit" / "dit.safetensors", dit)
    else:
        state = fixture("dit", "dit.safetensors")
        save_file({k: v for k, v in state.items() if not k.startswith("landmark_in.")}, str(dit))
    Path(str(dit) + SIDECAR_SUFFIX).write_text(json.dumps(RELEASE_TINY_CONFIG))
    adapter = models / "lato" / "landmark_in_release_tiny.pth"
    adapter.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "dit" / "landmark_in.pth", adapter)
    return {"dit": dit, "adapter": adapter}


def install_tokenizer(models: Path) -> Path:
    path = models / "lato" / "Po_VQVAE_release_tiny" / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "tokenizer" / "tokenizer.safetensors", path)
    return path
