"""python -m lato_core.evaluation --engine warp --cases default --out outputs/evaluation/warp"""
from __future__ import annotations

import argparse
import sys

from ..errors import FaceEditError
from .cases import load_cases
from .runner import ENGINE_NAMES, run_evaluation

EPILOG = """engines:
  warp  the landmark warp preview (thin-plate spline), needs no model weights.
  lato  the LaTo diffusion engine. Not wired in yet: the LaTo engine issue registers it with
        lato_core.evaluation.runner.register_engine("lato", fn), fn(crop, source_landmarks,
        target_landmarks, instruction) -> edited crop; until then --engine lato stops with that message.

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
    args = parser.parse_args(argv)
    try:
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
