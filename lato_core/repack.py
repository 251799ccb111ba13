"""Repack LaTo's released files into single safetensors files, as the frontend's model downloader needs them.

    python -m lato_core.repack adapter   landmark_in.pth          landmark_in.safetensors
    python -m lato_core.repack tokenizer Po_VQVAE/                lato_tokenizer.safetensors
    python -m lato_core.repack dit       lato.safetensors         lato_fp8_e4m3fn.safetensors [--fp8 e5m2]

The adapter pickle is read with weights_only=True. The tokenizer is checked strictly and written as one file.
The DiT's Linear weights become fp8 (everything else stays as it was), and its lato_config metadata is added so
the loaders need no guessing. Every loader takes both the released and the repacked forms.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .dit.loading import read_adapter_file
from .engine.files import config_metadata, config_sections, infer_connector_config, infer_dit_config, read_header
from .errors import FaceEditError, ModelFileError
from .tokenizer.loading import RELEASE_FILE, load_tokenizer

FP8 = {"e4m3fn": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}


def repack_adapter(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    state = {k.removeprefix("landmark_in."): v.contiguous() for k, v in read_adapter_file(os.fspath(source)).items()}
    if set(state) != {"weight", "bias"}:
        raise ModelFileError(f"{source}: a landmark adapter holds 'weight' and 'bias', found {sorted(state)}")
    save_file(state, str(target), metadata={"format": "pt", "lato": "landmark_in"})
    return Path(target)


def repack_tokenizer(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    source = Path(source)
    path = source / Path(RELEASE_FILE).name if source.is_dir() else source
    model = load_tokenizer(path, dtype=None)   # strict; keeps the file's dtypes
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(target),
              metadata={"format": "pt", "lato": "tokenizer"})
    return Path(target)


def is_linear_weight(key: str, shape: tuple[int, ...]) -> bool:
    return key.endswith(".weight") and len(shape) == 2 and not key.startswith(("connector.", "landmark_in."))


def repack_dit(source: str | os.PathLike, target: str | os.PathLike, fp8: str = "e4m3fn") -> Path:
    if fp8 not in FP8:
        raise FaceEditError(f"--fp8 must be one of {sorted(FP8)}")
    source = os.fspath(source)
    shapes, metadata = read_header(source)
    sections = config_sections(source, metadata)
    dit_config = infer_dit_config(shapes, sections, source)
    connector_config = infer_connector_config(shapes, sections, source)
    out = {}
    with safe_open(source, framework="pt", device="cpu") as handle:
        for key in handle.keys():
            tensor = handle.get_tensor(key)
            out[key] = tensor.to(FP8[fp8]) if is_linear_weight(key, tuple(tensor.shape)) else tensor
    save_file(out, str(target), metadata={"format": "pt", **config_metadata(dit_config, connector_config)})
    return Path(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lato_core.repack", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("adapter", "tokenizer", "dit"))
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--fp8", default="e4m3fn", choices=sorted(FP8), help="dit only: the fp8 format")
    args = parser.parse_args(argv)
    try:
        if args.kind == "adapter":
            written = repack_adapter(args.source, args.target)
        elif args.kind == "tokenizer":
            written = repack_tokenizer(args.source, args.target)
        else:
            written = repack_dit(args.source, args.target, args.fp8)
    except FaceEditError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
