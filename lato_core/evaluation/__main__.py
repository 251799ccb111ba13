"""python -m lato_core.evaluation --engine warp --cases default --out outputs/evaluation/warp"""
from __future__ import annotations

import argparse
import sys

from ..errors import FaceEditError
from .cases import load_cases
from .runner import ENGINE_NAMES, register_engine, run_evaluation

EPILOG = """engines:
  warp  the landmark warp preview (thin-plate spline), needs no model weights.
  lato  the LaTo diffusion engine, from --lato-models (a ComfyUI models/ folder with the release's files
        where the README's model table puts them; lato_core.evaluation.lato_engine.RELEASE_LAYOUT).

cases: 'default' (the shipped table on sample:astronaut and sample:grace_hopper), a CSV file with
columns photo,instruction[,id,yaw,pitch,roll], or a folder of photos (its cases.csv if present, else
every photo with five standard instructions).

outputs: results.csv, results.md, landmark_error_vs_yaw.png, images/, cases/ in --out."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lato_core.evaluation", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Run face edits on a table of cases and measure them.")
    parser.add_argument("--engine", choices=ENGINE_NAMES, default="warp", help="edit engine (default warp)")
    parser.add_argument("--cases", default="default", help="'default', a CSV file or a folder of photos")
    parser.add_argument("--out", default="outputs/evaluation", help="output folder (created)")
    parser.add_argument("--arcface", default=None, help="optional ArcFace ONNX model for the paper's identity score")
    parser.add_argument("--detector", default="dlib_hog", choices=("dlib_hog", "dlib_cnn", "mediapipe"),
                        help="face detector for the photos and the edits")
    parser.add_argument("--limit", type=int, default=0, help="run only the first N cases")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--lato-models", default=None, help="with --engine lato: the models/ folder holding LaTo's files")
    parser.add_argument("--steps", type=int, default=28, help="with --engine lato: sampling steps (release 28)")
    parser.add_argument("--seed", type=int, default=0, help="with --engine lato: noise seed")
    parser.add_argument("--lora-strength", type=float, default=1.0, help="with --engine lato: LoRA strength")
    args = parser.parse_args(argv)
    try:
        if args.engine == "lato":
            if not args.lato_models:
                raise FaceEditError("--engine lato needs --lato-models, the models/ folder with LaTo's files.")
            from .lato_engine import LaToFiles, make_lato_engine
            register_engine("lato", make_lato_engine(LaToFiles.from_models_dir(args.lato_models), args.steps,
                                                     args.seed, lora_strength=args.lora_strength))
        cases = load_cases(args.cases)
        cases = cases[: args.limit] if args.limit > 0 else cases
        rows = run_evaluation(cases, args.engine, args.out, args.arcface, args.detector, progress=not args.quiet)
    except FaceEditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = sum(1 for row in rows if row.get("error"))
    print(f"{len(rows) - failed} of {len(rows)} cases measured; results in {args.out}/results.md")
    return 1 if failed == len(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
