"""Reading LaTo model files: the safetensors header, and the DiT / connector configs implied by it.

Every size a tensor shape fixes is read from the shapes. What shapes cannot tell (the RoPE axes split, the
connector's head count) comes, in this order, from a "lato_config" JSON in the file's metadata (files this pack
writes), from a sidecar `<file name>.lato_config.json` beside the file with the same JSON, or from the release
when the shapes are the release's (128-wide heads). Anything else is a ModelFileError naming the file.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass, fields, replace

from ..checkpoint_check import strip_prefixes
from ..dit.config import DiTConfig
from ..dit.loading import adapter_state, check_adapter, detect_checkpoint_kind, read_adapter_file
from ..errors import ModelFileError
from ..text.connector import ConnectorConfig

METADATA_KEY = "lato_config"
SIDECAR_SUFFIX = ".lato_config.json"
RELEASE_HEAD_DIM = 128
MAX_HEADER_BYTES = 100_000_000
Shapes = dict[str, tuple[int, ...]]


def read_header(path: str | os.PathLike) -> tuple[Shapes, dict[str, str]]:
    """({tensor name: shape}, metadata) from a .safetensors file without reading the tensors."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"Model file not found: {path}")
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > MAX_HEADER_BYTES or length > os.path.getsize(path) - 8:
                raise ValueError("header length beyond the file")
            header = json.loads(f.read(length))
        metadata = header.pop("__metadata__", {}) or {}
        shapes = {k: tuple(int(d) for d in v["shape"]) for k, v in header.items()}
    except (struct.error, ValueError, UnicodeDecodeError, TypeError, KeyError, AttributeError) as e:
        raise ModelFileError(f"{path} is not a readable .safetensors file ({e}); it is truncated or corrupt: "
                             "download it again.") from None
    return shapes, metadata


def config_sections(path: str | os.PathLike, metadata: dict[str, str]) -> dict:
    """The lato_config JSON of the file (metadata) or of its sidecar; {} when there is none."""
    path = os.fspath(path)
    sidecar = path + SIDECAR_SUFFIX
    for origin, read in ((f"the '{METADATA_KEY}' metadata of {path}", lambda: metadata.get(METADATA_KEY)),
                         (sidecar, lambda: open(sidecar, encoding="utf-8").read() if os.path.isfile(sidecar) else None)):
        raw = read()
        if raw is None:
            continue
        try:
            sections = json.loads(raw)
            if not isinstance(sections, dict) or not all(isinstance(v, dict) for v in sections.values()):
                raise ValueError('expected {"dit": {...}, "connector": {...}}')
        except (ValueError, RecursionError) as e:
            raise ModelFileError(f"{origin} is not a valid LaTo config ({e}); fix or delete it.") from None
        return sections
    return {}


def _dim(shapes: Shapes, key: str, axis: int, rank: int, name: str) -> int:
    shape = shapes.get(key)
    if shape is None or len(shape) != rank:
        found = "missing" if shape is None else f"of shape {list(shape)}"
        raise ModelFileError(f"{name}: tensor {key} is {found}, expected a {rank}-D tensor. This is not a "
                             "Step1X-Edit / LaTo DiT file: pick lato/lato.safetensors of the LaTo release.")
    return int(shape[axis])


def _block_count(shapes: Shapes, prefix: str, index_at: int) -> int:
    return len({k.split(".")[index_at] for k in shapes if k.startswith(prefix)})


def _override(cls, sections: dict | None, name: str, section: str) -> dict:
    override = dict((sections or {}).get(section, {}))
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(override) - known)
    if unknown:
        raise ModelFileError(f"{name}: the LaTo config's '{section}' has unknown fields {unknown}; known: "
                             f"{sorted(known)}.")
    return override


def _with_overrides(cls, values: dict, override: dict, name: str, section: str):
    merged = {**values, **override}
    if "axes_dim" in merged:
        merged["axes_dim"] = tuple(merged["axes_dim"])
    try:
        return cls(**merged)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{name}: its {section} config does not fit the weights ({e}).") from None


def infer_dit_config(shapes: Shapes, sections: dict | None = None, name: str = "the DiT file") -> DiTConfig:
    shapes = strip_prefixes(shapes)
    override = _override(DiTConfig, sections, name, "dit")
    hidden = _dim(shapes, "img_in.weight", 0, 2, name)
    head_dim = _dim(shapes, "double_blocks.0.img_attn.norm.query_norm.scale", 0, 1, name)
    if head_dim <= 0 or hidden % head_dim:
        raise ModelFileError(f"{name}: hidden size {hidden} is not a multiple of the head width {head_dim}.")
    if "axes_dim" not in override and head_dim != RELEASE_HEAD_DIM:
        raise ModelFileError(
            f"{name}: its attention heads are {head_dim} wide, not the release's {RELEASE_HEAD_DIM}, so the RoPE "
            f"axes cannot be read off the shapes. Give them in {os.path.basename(name)}{SIDECAR_SUFFIX} beside it, "
            'e.g. {"dit": {"axes_dim": [4, 6, 6]}} (three even numbers summing to the head width).')
    values = dict(
        in_channels=_dim(shapes, "img_in.weight", 1, 2, name), hidden_size=hidden, num_heads=hidden // head_dim,
        depth=_block_count(shapes, "double_blocks.", 1), depth_single=_block_count(shapes, "single_blocks.", 1),
        mlp_ratio=_dim(shapes, "double_blocks.0.img_mlp.0.weight", 0, 2, name) / hidden,
        qkv_bias="double_blocks.0.img_attn.qkv.bias" in shapes,
        vec_in_dim=_dim(shapes, "vector_in.in_layer.weight", 1, 2, name),
        context_in_dim=_dim(shapes, "txt_in.weight", 1, 2, name),
        guidance_embed="guidance_in.in_layer.weight" in shapes,
        landmark_dim=(_dim(shapes, "landmark_in.weight", 1, 2, name) if "landmark_in.weight" in shapes
                      else DiTConfig().landmark_dim),
        timestep_embed_dim=_dim(shapes, "time_in.in_layer.weight", 1, 2, name),
    )
    return _with_overrides(DiTConfig, values, override, name, "dit")


def infer_connector_config(shapes: Shapes, sections: dict | None = None,
                           name: str = "the DiT file") -> ConnectorConfig | None:
    """None when the file has no connector.* (a plain FLUX file, or a DiT saved without it)."""
    shapes = strip_prefixes(shapes)
    p = "connector."
    if not any(k.startswith(p) for k in shapes):
        return None
    override = _override(ConnectorConfig, sections, name, "connector")
    hidden = _dim(shapes, f"{p}S.input_embedder.weight", 0, 2, name)
    release_hidden = ConnectorConfig.release().hidden_size
    if "num_heads" not in override and hidden != release_hidden:
        raise ModelFileError(
            f"{name}: its connector is {hidden} wide, not the release's {release_hidden}, and its head count "
            f"cannot be read off the shapes. Give it in {os.path.basename(name)}{SIDECAR_SUFFIX} beside it, "
            'e.g. {"connector": {"num_heads": 4}}.')
    values = dict(in_dim=_dim(shapes, f"{p}S.input_embedder.weight", 1, 2, name), hidden_size=hidden,
                  num_heads=ConnectorConfig.release().num_heads, depth=_block_count(
                      shapes, f"{p}S.individual_token_refiner.blocks.", 4),
                  mlp_ratio=_dim(shapes, f"{p}S.individual_token_refiner.blocks.0.mlp.fc1.weight", 0, 2, name) / hidden,
                  pooled_dim=_dim(shapes, f"{p}global_proj_out.weight", 0, 2, name),
                  timestep_freq_dim=_dim(shapes, f"{p}S.t_embedder.mlp.0.weight", 1, 2, name))
    return _with_overrides(ConnectorConfig, values, override, name, "connector")


@dataclass
class LaToFile:
    """What a LaTo checkpoint (and the adapter file chosen for it) hold, checked before any weight is read."""
    dit: DiTConfig
    connector: ConnectorConfig
    adapter: dict | None          # landmark_in {weight, bias} from the adapter file, when one was chosen
    adapter_name: str | None
    has_landmark_in: bool         # the checkpoint itself carries landmark_in.*


def inspect_lato_file(path: str | os.PathLike, adapter_path: str | os.PathLike | None = None) -> LaToFile:
    """Configs of lato.safetensors from its header (plain FLUX files refused), and the adapter file read and
    checked; a checkpoint without landmark_in takes its token width from the adapter file."""
    path = os.fspath(path)
    shapes, metadata = read_header(path)
    sections = config_sections(path, metadata)
    connector = infer_connector_config(shapes, sections, path)
    kind = detect_checkpoint_kind(shapes)
    if kind != "step1x_edit" or connector is None:
        raise ModelFileError(f"{path} is a plain FLUX file ({kind}) without Step1X-Edit's connector.*; LaTo needs "
                             "lato.safetensors from the LaTo release (lato/lato.safetensors) in "
                             "models/diffusion_models/.")
    dit = infer_dit_config(shapes, sections, path)
    has_landmark_in = "landmark_in.weight" in strip_prefixes(shapes)
    name = None if adapter_path is None else os.fspath(adapter_path)
    adapter = None if name is None else adapter_state(read_adapter_file(name))
    if adapter is None and not has_landmark_in:
        raise ModelFileError(f"{path} has no landmark_in.* weights: put landmark_in.pth (from the LaTo code "
                             "release) in models/lato/ and choose it as the landmark adapter.")
    if adapter is not None:
        weight = adapter.get("weight")
        if not has_landmark_in and weight is not None and weight.ndim == 2:
            dit = replace(dit, landmark_dim=weight.shape[1])
        check_adapter(adapter, dit, name)
    return LaToFile(dit, connector, adapter, name, has_landmark_in)


def config_metadata(dit: DiTConfig | None = None, connector: ConnectorConfig | None = None) -> dict[str, str]:
    """Metadata to store with a file this pack writes, so that loading needs no guessing."""
    payload = {}
    if dit is not None:
        payload["dit"] = asdict(dit)
    if connector is not None:
        payload["connector"] = asdict(connector)
    return {METADATA_KEY: json.dumps(payload)}
