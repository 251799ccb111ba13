"""Reading LaTo model files: the safetensors header, and the DiT / connector configs implied by it.

Every size a tensor shape fixes is read from the shapes. What shapes cannot tell (head counts, RoPE axes)
comes from a "lato_config" JSON in the file's metadata when present (files this pack writes, e.g. tiny
test models), else from the release, whose 128-wide heads fix the rest.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import fields

from ..dit.config import DiTConfig
from ..errors import FaceEditError
from ..text.connector import ConnectorConfig

METADATA_KEY = "lato_config"
RELEASE_HEAD_DIM = 128


class ModelFileError(FaceEditError):
    pass


def read_header(path: str | os.PathLike) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """({tensor name: shape}, metadata) from a .safetensors file without reading the tensors."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"Model file not found: {path}")
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000 or length > os.path.getsize(path):
                raise ValueError("header length beyond the file")
            header = json.loads(f.read(length))
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path} is not a readable .safetensors file ({e}); re-download it.") from None
    metadata = header.pop("__metadata__", {}) or {}
    return {k: tuple(v["shape"]) for k, v in header.items()}, metadata


def _metadata_config(metadata: dict[str, str], section: str) -> dict:
    raw = metadata.get(METADATA_KEY)
    return json.loads(raw).get(section, {}) if raw else {}


def _strip(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    for prefix in ("model.diffusion_model.", "diffusion_model."):
        if any(k.startswith(prefix) for k in shapes):
            return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in shapes.items()}
    return shapes


def _axes_for(head_dim: int) -> tuple[int, int, int]:
    """The release splits 128 as (16, 56, 56); other widths keep those proportions, rounded to even."""
    first = max(2, round(head_dim / 8 / 2) * 2)
    rest = (head_dim - first) // 2
    return first, rest, head_dim - first - rest


def infer_dit_config(shapes: dict[str, tuple[int, ...]], metadata: dict[str, str] | None = None) -> DiTConfig:
    shapes = _strip(shapes)
    if "img_in.weight" not in shapes or "double_blocks.0.img_attn.norm.query_norm.scale" not in shapes:
        raise ModelFileError("This file has no Step1X-Edit / FLUX DiT (img_in, double_blocks): pick lato.safetensors.")
    hidden, in_channels = shapes["img_in.weight"]
    head_dim = shapes["double_blocks.0.img_attn.norm.query_norm.scale"][0]
    count = lambda prefix: len({k.split(".")[1] for k in shapes if k.startswith(prefix)})
    values = dict(
        in_channels=in_channels, hidden_size=hidden, num_heads=hidden // head_dim,
        depth=count("double_blocks."), depth_single=count("single_blocks."),
        mlp_ratio=shapes["double_blocks.0.img_mlp.0.weight"][0] / hidden,
        qkv_bias="double_blocks.0.img_attn.qkv.bias" in shapes, axes_dim=_axes_for(head_dim),
        vec_in_dim=shapes["vector_in.in_layer.weight"][1], context_in_dim=shapes["txt_in.weight"][1],
        guidance_embed="guidance_in.in_layer.weight" in shapes,
        landmark_dim=shapes["landmark_in.weight"][1] if "landmark_in.weight" in shapes else DiTConfig().landmark_dim,
        timestep_embed_dim=shapes["time_in.in_layer.weight"][1],
    )
    override = _metadata_config(metadata or {}, "dit")
    if "axes_dim" in override:
        override["axes_dim"] = tuple(override["axes_dim"])
    known = {f.name for f in fields(DiTConfig)}
    return DiTConfig(**{**values, **{k: v for k, v in override.items() if k in known}})


def infer_connector_config(shapes: dict[str, tuple[int, ...]], metadata: dict[str, str] | None = None) -> ConnectorConfig | None:
    """None when the file has no connector.* (a plain FLUX file, or a DiT saved without it)."""
    shapes = _strip(shapes)
    prefix = "connector."
    if f"{prefix}S.input_embedder.weight" not in shapes:
        return None
    hidden, in_dim = shapes[f"{prefix}S.input_embedder.weight"]
    depth = len({k.split(".")[4] for k in shapes if k.startswith(f"{prefix}S.individual_token_refiner.blocks.")})
    values = dict(in_dim=in_dim, hidden_size=hidden, num_heads=max(1, hidden // RELEASE_HEAD_DIM), depth=depth,
                  mlp_ratio=shapes[f"{prefix}S.individual_token_refiner.blocks.0.mlp.fc1.weight"][0] / hidden,
                  pooled_dim=shapes[f"{prefix}global_proj_out.weight"][0],
                  timestep_freq_dim=shapes[f"{prefix}S.t_embedder.mlp.0.weight"][1])
    override = _metadata_config(metadata or {}, "connector")
    known = {f.name for f in fields(ConnectorConfig)}
    return ConnectorConfig(**{**values, **{k: v for k, v in override.items() if k in known}})


def config_metadata(dit: DiTConfig | None = None, connector: ConnectorConfig | None = None) -> dict[str, str]:
    """Metadata to store with a file this pack writes, so that loading needs no guessing."""
    from dataclasses import asdict
    payload = {}
    if dit is not None:
        payload["dit"] = asdict(dit)
    if connector is not None:
        payload["connector"] = asdict(connector)
    return {METADATA_KEY: json.dumps(payload)}
