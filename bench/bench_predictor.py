"""Speed of the instant edit path per 512 face crop, side by side with face detection in one run.

python bench/bench_predictor.py [--repeats 20]
Prints milliseconds (median) and each step's ratio to dlib HOG detection on the same photo.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lato_core.face.crop import crop_faces  # noqa: E402
from lato_core.face.detect import DetectOptions, detect_faces  # noqa: E402
from lato_core.predictor.predict import predict_target  # noqa: E402
from lato_core.predictor.thin_plate_preview import warp_crop  # noqa: E402

INSTRUCTION = "turn her head 30 degrees left and smile slightly"


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: model loading and caches are not what we measure
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--image", default=str(Path(__file__).resolve().parent.parent / "assets" / "portrait.jpg"))
    args = parser.parse_args()
    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    photo = torch.from_numpy(rgb.copy()).float()[None] / 255
    face = detect_faces(rgb)[0]
    crops, _, mapped = crop_faces(photo, [face])
    target, _ = predict_target(mapped[0], INSTRUCTION)

    rows = {
        "detect (dlib HOG, upsample 1)": lambda: detect_faces(rgb),
        "detect (mediapipe)": lambda: detect_faces(rgb, DetectOptions("mediapipe")),
        "crop to 512": lambda: crop_faces(photo, [face]),
        "parametric prediction": lambda: predict_target(mapped[0], INSTRUCTION),
        "TPS warp of the 512 crop": lambda: warp_crop(crops[0], mapped[0], target),
    }
    timings = {name: median_ms(fn, args.repeats) for name, fn in rows.items()}
    reference = timings["detect (dlib HOG, upsample 1)"]
    print(f"{'step':32s} {'ms':>9s} {'x detection':>12s}   ({rgb.shape[1]}x{rgb.shape[0]} photo, torch threads "
          f"{torch.get_num_threads()}, median of {args.repeats})")
    for name, ms in timings.items():
        print(f"{name:32s} {ms:9.2f} {ms / reference:12.2f}")


if __name__ == "__main__":
    main()
