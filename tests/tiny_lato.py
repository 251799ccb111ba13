"""One consistent set of tiny LaTo model files, in the released layouts, for the engine and ComfyUI tests.

DiT (tests/tiny_dit.py TINY: hidden 64, context 32, vec 16, landmark_dim 24) + connector (Qwen width 64 -> 32,
pooled 16) in one lato.safetensors with config metadata; a tokenizer with 24-wide codes; a tiny Qwen2.5-VL
folder (width 64); and, for ComfyUI's core VAELoader, a random full-width FLUX autoencoder (the core loader
only knows the real architecture), written in fp16 to keep it small.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors.torch import save_file

from lato_core.engine.files import config_metadata
from lato_core.text.connector import ConnectorConfig, Qwen2Connector
from tests.tiny_dit import TINY as DIT, random_bfl_state_dict
from tests.tiny_tokenizer import tiny_config, tiny_tokenizer

CONNECTOR = ConnectorConfig(in_dim=64, hidden_size=DIT.context_in_dim, num_heads=4, depth=2, mlp_ratio=4.0,
                            pooled_dim=DIT.vec_in_dim)
TOKENIZER = tiny_config(code_dim=DIT.landmark_dim)
FILES = {"dit": "diffusion_models/lato_tiny.safetensors", "tokenizer": "lato/tokenizer_tiny.safetensors",
         "adapter": "lato/landmark_in_tiny.pth", "text_encoder": "text_encoders/qwen_tiny",
         "vae": "vae/flux_vae_random.safetensors", "plain_flux": "diffusion_models/flux_plain_tiny.safetensors"}


def connector_state(seed: int = 0, text_width: int = CONNECTOR.in_dim) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    module = Qwen2Connector(dataclasses.replace(CONNECTOR, in_dim=text_width))
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return {f"connector.{k}": v.contiguous() for k, v in module.state_dict().items()}


def write_dit(path: Path, with_landmark_in: bool = True, with_connector: bool = True, seed: int = 0,
              null_tokens: bool = False, text_width: int = CONNECTOR.in_dim) -> Path:
    """text_width: the Qwen hidden size the connector reads (64 for the tiny Qwen folder, 3584 for the 7B)."""
    state = random_bfl_state_dict(DIT, seed)
    if null_tokens:
        state["landmark_null_tokens"] = torch.randn(68, DIT.landmark_dim, generator=torch.Generator().manual_seed(seed))
    if not with_landmark_in:
        state = {k: v for k, v in state.items() if not k.startswith("landmark_in.")}
    if with_connector:
        state.update(connector_state(seed, text_width))
    connector = dataclasses.replace(CONNECTOR, in_dim=text_width) if with_connector else None
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=config_metadata(DIT, connector))
    return path


def write_adapter(path: Path, seed: int = 1) -> Path:
    gen = torch.Generator().manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": torch.randn(DIT.hidden_size, DIT.landmark_dim, generator=gen) * 0.1,
                "bias": torch.zeros(DIT.hidden_size)}, path)
    return path


def write_tokenizer(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tiny_tokenizer(config=TOKENIZER).state_dict().items()}, str(path))
    return path


def write_text_encoder(folder: Path) -> Path:
    from tests.tiny_qwen import build_tiny_qwen_bundle

    model, processor = build_tiny_qwen_bundle(hidden=CONNECTOR.in_dim)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_flux_vae(path: Path, seed: int = 0) -> Path:
    from diffusers import AutoencoderKL

    from lato_core.vae import FLUX_AUTOENCODER_CONFIG
    from tests.test_vae import diffusers_to_bfl

    torch.manual_seed(seed)
    model = AutoencoderKL(**FLUX_AUTOENCODER_CONFIG)
    state = diffusers_to_bfl(model.state_dict(), len(FLUX_AUTOENCODER_CONFIG["up_block_types"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(path))
    return path


def write_all(models_dir: Path, vae: bool = False) -> dict[str, Path]:
    """Write the set under a ComfyUI models/ folder; returns {role: path}."""
    models_dir = Path(models_dir)
    paths = {role: models_dir / rel for role, rel in FILES.items()}
    write_dit(paths["dit"])
    write_dit(paths["plain_flux"], with_landmark_in=False, with_connector=False)
    write_adapter(paths["adapter"])
    write_tokenizer(paths["tokenizer"])
    write_text_encoder(paths["text_encoder"])
    if vae:
        write_flux_vae(paths["vae"])
    return paths
