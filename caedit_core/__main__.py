"""python -m caedit_core {dataset, train, inspect} ...

  dataset  photos -> face crops, region masks from landmarks, captions -> manifest.jsonl
  train    CA2 + reference net on a manifest (several GPUs: accelerate launch -m caedit_core train ...)
  inspect  print the key table of an adapter file
The trained file goes into ComfyUI's models/ca2 for the CA2 Adapter Loader node.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from .train import TrainConfig


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train the adapter (accelerate-aware)")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        required = field.default is dataclasses.MISSING
        if field.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        else:
            kind = {"int": int, "float": float}.get(str(field.type), str)
            p.add_argument(flag, type=kind, required=required, default=None if required else field.default)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m caedit_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dataset", help="build (image, mask, caption) triples from photos")
    d.add_argument("--images", required=True, help="folder of photos")
    d.add_argument("--out", required=True, help="output folder (masks/, images/, manifest.jsonl)")
    d.add_argument("--regions", default="brows,eyes,lips", help="comma list of: brows, eyes, lips, mouth, nose")
    d.add_argument("--captions", help="user captions: JSONL or CSV with image, region, caption")
    d.add_argument("--attributes", help="CelebA list_attr_celeba.txt or JSONL {image, attributes}")
    d.add_argument("--crop", type=int, default=512, help="square face crop side; 0 keeps the whole photo")
    d.add_argument("--grow", type=float, default=8.0, help="mask dilation in pixels")
    d.add_argument("--no-hull", action="store_true", help="exact region polygons instead of their convex hulls")
    _train_parser(sub)
    i = sub.add_parser("inspect", help="print an adapter file's key table")
    i.add_argument("file")
    args = parser.parse_args(argv)

    if args.command == "dataset":
        from .dataset import build_dataset
        manifest = build_dataset(args.images, args.out, [r.strip() for r in args.regions.split(",") if r.strip()],
                                 args.captions, args.attributes, args.crop, args.grow, not args.no_hull)
        print(f"wrote {manifest} ({sum(1 for _ in open(manifest))} triples)")
    elif args.command == "train":
        from .train import train
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
        train(TrainConfig(**values))
    else:
        from .checkpoint import key_table
        print(key_table(args.file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
