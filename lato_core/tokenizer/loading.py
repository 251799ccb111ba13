"""Strict loading of the released tokenizer weights (Po_VQVAE/model.safetensors) and point normalisation.

The release's keys are the module's own names (encoder.*, vq.codebook, optional decoder.*), so the key
table is `expected_shapes(config)`; nothing is renamed. Every mismatch is reported in one error.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from ..checkpoint_check import check_layout
from ..errors import LandmarkFormatError, ModelFileError
from .config import TokenizerConfig
from .model import LandmarkTokenizer

RELEASE_FILE = "Po_VQVAE/model.safetensors"
CANVAS = 512.0


def expected_shapes(config: TokenizerConfig, with_decoder: bool = True) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a checkpoint for `config` (the release layout), without allocating weights."""
    with torch.device("meta"):
        model = LandmarkTokenizer(config, with_decoder=with_decoder)
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def read_header(path: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, dtype name) from the safetensors header, without reading the tensors."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"landmark tokenizer file '{path}' does not exist (or is not a file); download {RELEASE_FILE} from the LaTo model repo")
    try:
        with safe_open(str(path), framework="pt") as handle:
            slices = {key: handle.get_slice(key) for key in handle.keys()}
            return {key: (tuple(s.get_shape()), s.get_dtype()) for key, s in slices.items()}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise _unreadable(path, exc) from exc


def infer_config(shapes: dict, base: TokenizerConfig | None = None) -> TokenizerConfig:
    """Architecture sizes read off the tensor shapes; anything unreadable keeps `base` (the release)."""
    base = base or TokenizerConfig.release()
    dims = {key: tuple(value[0]) if value and isinstance(value[0], tuple) else tuple(value)  # header or plain shapes
            for key, value in shapes.items()}

    def dim(key: str, axis: int, rank: int, default: int) -> int:
        shape = dims.get(key)
        return int(shape[axis]) if shape is not None and len(shape) == rank else default

    low = dim("encoder.conv_in.weight", 0, 3, base.channels[0])
    high = dim("encoder.resnet2.conv_short.weight", 0, 3, dim("encoder.conv_out.weight", 1, 3, base.channels[1]))
    blocks = 0
    while f"encoder.resnet1.{blocks}.block.0.weight" in dims:
        blocks += 1
    return replace(
        base,
        in_channels=dim("encoder.conv_in.weight", 1, 3, base.in_channels),
        channels=(low, high),
        code_dim=dim("encoder.conv_out.weight", 0, 3, dim("vq.codebook", 1, 2, base.code_dim)),
        codebook_size=dim("vq.codebook", 0, 2, base.codebook_size),
        num_res_blocks=blocks or base.num_res_blocks,
    )


def check_tokenizer_layout(path: str | Path, header: dict, config: TokenizerConfig, with_decoder: bool) -> None:
    """Raise one ModelFileError listing every missing, unexpected, mis-shaped or non-float key."""
    found = {key: shape for key, (shape, _) in header.items()}
    not_float = [f"{key} ({dtype})" for key, (_, dtype) in header.items() if not dtype.startswith(("F", "BF"))]
    low, high = config.channels
    check_layout(f"landmark tokenizer file '{path}'", found, expected_shapes(config, with_decoder),
                 f"the LaTo tokenizer layout expected here (channels {low}->{high}, code_dim {config.code_dim}, "
                 f"codebook {config.codebook_size}, {config.num_res_blocks} res blocks per stage, decoder "
                 f"{'included' if with_decoder else 'absent'})",
                 f"Use the released {RELEASE_FILE} (or a file saved from LandmarkTokenizer.state_dict()).",
                 [f"  non-float tensors ({len(not_float)}): {', '.join(not_float[:12])}"] if not_float else [])


def load_tokenizer(path: str | Path, config: TokenizerConfig | None = None, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = torch.float32, decoder: bool | None = None) -> LandmarkTokenizer:
    """Load a tokenizer strictly, in eval mode.

    config: the expected architecture; None infers it from the tensor shapes (non-shape fields such as
    dilation_reference come from TokenizerConfig.release()). dtype None keeps the file's dtype.
    decoder: None loads decoder.* when the file has it, True requires it, False skips it (encoding only).
    """
    path = Path(path)
    header = read_header(path)
    if decoder is False:
        header = {key: value for key, value in header.items() if not key.startswith("decoder.")}
    with_decoder = bool(decoder) or any(key.startswith("decoder.") for key in header)
    if config is None:
        try:
            config = infer_config(header)
        except ValueError as exc:
            raise ModelFileError(f"landmark tokenizer file '{path}' has unusable sizes: {exc}") from exc
    check_tokenizer_layout(path, header, config, with_decoder)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors = {key: handle.get_tensor(key) for key in header}
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    if dtype is not None:
        tensors = {key: t.to(dtype) for key, t in tensors.items()}
    with torch.device("meta"):
        model = LandmarkTokenizer(config, with_decoder=with_decoder)
    model.load_state_dict(tensors, strict=True, assign=True)
    return model.to(device).eval()


def points_to_tokens_input(points, canvas: float | tuple[float, float] = CANVAS) -> torch.Tensor:
    """(B, 68, 2) or (68, 2) pixel (x, y) on the canvas -> (B, 2, 68) float32 in [-1, 1]: 2 * p / canvas - 1."""
    pts = (points if torch.is_tensor(points) else torch.as_tensor(np.asarray(points))).float()
    if pts.dim() == 2:
        pts = pts[None]
    if pts.dim() != 3 or pts.shape[-2:] != (68, 2):
        raise LandmarkFormatError(f"expected 68 (x, y) points as (68, 2) or (batch, 68, 2), got {tuple(pts.shape)}")
    size = torch.as_tensor(canvas, dtype=torch.float32, device=pts.device).expand(2)
    return (2.0 * pts / size - 1.0).transpose(1, 2).contiguous()


def tokens_input_to_points(x: torch.Tensor, canvas: float | tuple[float, float] = CANVAS) -> torch.Tensor:
    """(B, 2, 68) in [-1, 1] -> (B, 68, 2) pixel (x, y) on the canvas: (v + 1) * canvas / 2."""
    if x.dim() != 3 or x.shape[1] != 2:
        raise LandmarkFormatError(f"expected (batch, 2, points), got {tuple(x.shape)}")
    size = torch.as_tensor(canvas, dtype=torch.float32, device=x.device).expand(2)
    return ((x.float().transpose(1, 2) + 1.0) * size / 2.0).contiguous()


def _unreadable(path: Path, exc: Exception) -> ModelFileError:
    return ModelFileError(
        f"landmark tokenizer file '{path}' is not a readable safetensors file "
        f"({type(exc).__name__}: {exc}); it is probably truncated or corrupt, download {RELEASE_FILE} again")
