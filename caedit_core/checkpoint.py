"""CA-Edit adapter weights: the CA2 layers (+ optional reference net) in one safetensors file, strictly checked.

Key table (`key_table(path)` prints it for a file; `python -m caedit_core inspect FILE`):
  ca2.<layer>.to_k_vis.weight                 (inner_dim, clip_dim)   W_vis^K, Eq. 4
  ca2.<layer>.to_v_vis.weight                 (inner_dim, clip_dim)   W_vis^V, Eq. 5
  ca2.<layer>.score_predictor.fc1.weight/bias (hidden, inner_dim + text_dim), (hidden)   Eq. 3, layer 1
  ca2.<layer>.score_predictor.fc2.weight/bias (1, hidden), (1)                           Eq. 3, layer 2
  refnet.<diffusers name>                     the reference net (conv_in, time_embedding, down_blocks, mid_block,
                                              down_zero_convs.<i>, mid_zero_conv); absent for CA2-only adapters
<layer> is the diffusers name of a cross-attention layer, e.g. down_blocks.0.attentions.0.transformer_blocks.0.attn2,
inside the main UNet (placement "unet") or inside the reference net (placement "refnet").
Metadata: format = "caedit-adapter", format_version = "1", config = JSON (see `adapter_config`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from lato_core.checkpoint_check import check_layout, shapes_of
from lato_core.errors import ModelFileError

from .ca2 import CA2Attention, CA2Config
from .refnet import ReferenceNet

FORMAT, FORMAT_VERSION = "caedit-adapter", "1"
PLACEMENTS = ("unet", "refnet")
CLIP_TOKENS = ("penultimate", "last")
LAYER_PARAMS = ("to_k_vis.weight", "to_v_vis.weight", "score_predictor.fc1.weight", "score_predictor.fc1.bias",
                "score_predictor.fc2.weight", "score_predictor.fc2.bias")


def adapter_config(layers: dict[str, tuple[int, int]], clip_dim: int, pooled_text_dim: int, layers_per_block: int,
                   placement: str = "unet", refnet_unet_config: dict | None = None, clip_tokens: str = "penultimate",
                   score_hidden_dim: int = 256, softmax_over: str = "separate", score_activation: str = "sigmoid",
                   vis_scale: float = 1.0, uncond_image: str = "zeros") -> dict:
    """Everything needed to rebuild the modules: layers = {attn2 name: (inner_dim, heads)}."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}")
    if placement == "refnet" and refnet_unet_config is None:
        raise ValueError("placement 'refnet' needs a reference net")
    if clip_tokens not in CLIP_TOKENS:
        raise ValueError(f"clip_tokens must be one of {CLIP_TOKENS}")
    return {"placement": placement, "layers": {k: list(v) for k, v in layers.items()}, "clip_dim": clip_dim,
            "pooled_text_dim": pooled_text_dim, "layers_per_block": layers_per_block, "clip_tokens": clip_tokens,
            "score_hidden_dim": score_hidden_dim, "softmax_over": softmax_over,
            "score_activation": score_activation, "vis_scale": vis_scale, "uncond_image": uncond_image,
            "refnet": None if refnet_unet_config is None else {"unet_config": refnet_unet_config}}


# hidden width of the CLIP vision towers ComfyUI loads -> their name, for the mismatch message
VISION_WIDTHS = {768: "ViT-B/16 or ViT-B/32", 1024: "ViT-L/14", 1280: "ViT-H/14", 1664: "ViT-bigG/14"}


def image_tokens(config: dict, clip_vision_output) -> torch.Tensor:
    """The CLIP image tokens the adapter was trained on (penultimate or last hidden states of a CLIP Vision Encode
    output); refuses a vision model of another width, naming both models."""
    key = "penultimate_hidden_states" if config["clip_tokens"] == "penultimate" else "last_hidden_state"
    tokens = clip_vision_output[key]
    want, got = config["clip_dim"], tokens.shape[-1]
    if got != want:
        name = lambda width: VISION_WIDTHS.get(width, "an unknown model")  # noqa: E731
        raise ModelFileError(f"The CA2 adapter expects {want}-wide CLIP image tokens ({name(want)}), this CLIP vision "
                             f"model gives {got} ({name(got)}): load the CLIP vision model the adapter was trained "
                             "with in CLIP Vision Loader.")
    return tokens


def _escape(name: str) -> str:
    return name.replace(".", "__")


class CAEditAdapter(nn.Module):
    def __init__(self, config: dict, refnet: ReferenceNet | None = None):
        """From a config (see adapter_config). The reference net is built empty (meta) unless given."""
        super().__init__()
        self.config = config
        self.ca2 = nn.ModuleDict({_escape(name): CA2Attention(CA2Config(
            inner_dim=dims[0], heads=dims[1], clip_dim=config["clip_dim"], latent_dim=dims[0],
            pooled_text_dim=config["pooled_text_dim"], score_hidden_dim=config["score_hidden_dim"],
            softmax_over=config["softmax_over"], score_activation=config["score_activation"],
            vis_scale=config["vis_scale"])) for name, dims in config["layers"].items()})
        if refnet is None and config.get("refnet"):
            refnet = ReferenceNet(config["refnet"]["unet_config"])
        self.refnet = refnet
        if refnet is not None and config["placement"] == "refnet":
            refnet.set_ca2_layers(self.layers())

    def layers(self) -> dict[str, CA2Attention]:
        return {name: self.ca2[_escape(name)] for name in self.config["layers"]}

    def file_state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, layer in self.layers().items():
            out.update({f"ca2.{name}.{k}": v for k, v in layer.state_dict().items()})
        if self.refnet is not None:
            out.update({f"refnet.{k}": v for k, v in self.refnet.state_dict().items()})
        return out

    def load_file_state_dict(self, tensors: dict[str, torch.Tensor], source: str = "state dict") -> None:
        check_layout(source, shapes_of(tensors), shapes_of(self.file_state_dict()),
                     "its own CA-Edit adapter config", "Re-export the adapter with `python -m caedit_core train`.")
        for name, layer in self.layers().items():
            layer.load_state_dict({p: tensors[f"ca2.{name}.{p}"] for p in LAYER_PARAMS}, strict=True)
        if self.refnet is not None:
            self.refnet.load_state_dict({k[len("refnet."):]: v for k, v in tensors.items() if k.startswith("refnet.")},
                                        strict=True, assign=True)


def save_adapter(adapter: CAEditAdapter, path: str | Path, dtype: torch.dtype | None = None,
                 extra_metadata: dict | None = None, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Writes the adapter (or `tensors`, e.g. with a LoRA-merged reference net, under the adapter's config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in (tensors if tensors is not None else adapter.file_state_dict()).items()}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": json.dumps(adapter.config)}
    metadata.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    save_file(tensors, str(path), metadata=metadata)
    return path


def read_adapter_file(path: str | Path) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(config, tensors, metadata); raises ModelFileError naming the file when it is not a CA-Edit adapter."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ModelFileError(f"{path}: not a readable safetensors file ({e})") from e
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path}: metadata format is {metadata.get('format')!r}, expected {FORMAT!r} "
                              "(is this an IP-Adapter or another model?)")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: format_version {metadata.get('format_version')!r}, this pack reads "
                              f"{FORMAT_VERSION!r}")
    try:
        config = json.loads(metadata["config"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: metadata has no valid 'config' JSON ({e})") from e
    return config, tensors, metadata


def load_adapter(path: str | Path, dtype: torch.dtype | None = None) -> CAEditAdapter:
    """Strict load: every key of the config's modules present with its shape, nothing extra."""
    config, tensors, _ = read_adapter_file(path)
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    try:
        adapter = CAEditAdapter(config)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: config cannot build an adapter ({e!r})") from e
    adapter.load_file_state_dict(tensors, source=str(path))
    if dtype is not None:
        adapter.to(dtype)
    return adapter.eval().requires_grad_(False)


def key_table(path: str | Path) -> str:
    """Readable listing: config summary, then key, shape, dtype per tensor (reference-net keys summarised by block)."""
    config, tensors, metadata = read_adapter_file(path)
    refnet_keys = [k for k in tensors if k.startswith("refnet.")]
    lines = [f"{path}", f"  placement {config['placement']}, {len(config['layers'])} CA2 layers, clip_dim "
             f"{config['clip_dim']} ({config['clip_tokens']} tokens), text_dim {config['pooled_text_dim']}, "
             f"reference net: {'yes' if config.get('refnet') else 'no'}"]
    lines += [f"  {k} = {v}" for k, v in metadata.items() if k not in ("format", "format_version", "config")]
    for key in sorted(k for k in tensors if not k.startswith("refnet.")):
        lines.append(f"  {key:<90} {str(list(tensors[key].shape)):<14} {str(tensors[key].dtype).replace('torch.', '')}")
    groups: dict[str, int] = {}
    for key in refnet_keys:
        parts = key.split(".")
        head = ".".join(parts[:-1] if len(parts) <= 3 else parts[:3])  # refnet.conv_in, refnet.down_blocks.0, ...
        groups[head] = groups.get(head, 0) + tensors[key].numel()
    lines += [f"  {head:<90} {count / 1e6:.3f} M params" for head, count in sorted(groups.items())]
    return "\n".join(lines)
