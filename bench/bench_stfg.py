"""Cost of one STFG-guided sampling step relative to an unguided one: time and peak memory, side by side.

python bench/bench_stfg.py [--latent 32] [--repeats 5]
Both steps run ComfyUI's own UNetModel (the tiny SD1.5-shaped one of tests/tiny_sd15.py, weights created under
inference_mode as ComfyUI loads them) on a CFG batch (cond + uncond) inside torch.inference_mode(). The guided
step is what FaceEditSTFGGuider does from its second step on: forward with graph through the loaded weights (autograd
views, no copy), text-attention recording, boundary, backward to z_t. Prints milliseconds (median), the median of
per-pair ratios (pairs alternate, so background load hits both alike), and the peak memory above the loaded model
of each kind of step, each measured in a fresh process (CUDA: max_memory_allocated; CPU: resident set sampled
every millisecond).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from caedit_core.comfy_patches import Attn2Patch  # noqa: E402
from caedit_core.stfg_stepper import STFGStepper  # noqa: E402
from tiny_sd15 import cfg_denoiser, comfy_unet  # noqa: E402

KEYS = [("input", 1, 0), ("middle", 0, 0), ("output", 0, 0), ("output", 1, 0)]


def setup(n: int, record: bool = True):
    """(plain step, guided step, UNet) on a latent of n x n; record: make the first guided step's recording pass."""
    unet = comfy_unet()
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        x = torch.randn(1, 4, n, n, generator=g) * 3
        concat = torch.randn(1, 5, n, n, generator=g)
        context = torch.randn(2, 77, 768, generator=g)
        source = torch.randn(1, 4, n, n, generator=g)
        mask = torch.zeros(1, n * 8, n * 8)
        mask[:, n * 2:n * 6, n * 2:n * 6] = 1
    stepper = STFGStepper(mask, strength=2.0)
    options = {"cond_or_uncond": [0, 1], "patches_replace": {"attn2": {k: Attn2Patch(None, stepper.recorder) for k in KEYS}}}

    predict = cfg_denoiser(unet, concat, context, options)
    sigma = torch.tensor([3.0])
    with torch.inference_mode():
        stepper.reset(source)
        if record:
            stepper.recorded(predict, x, sigma)  # what the first guided step does once per run

    def plain():
        with torch.inference_mode():
            return predict(x, sigma)

    def guided():
        with torch.inference_mode():
            return stepper(x, sigma, predict, unet)
    return plain, guided, unet


def timed_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def interleaved(plain_fn, guided_fn, repeats: int) -> tuple[list[float], list[float]]:
    """Alternates the two so that load from other processes hits both alike."""
    plain_fn(), guided_fn()  # warm-up
    plain, guided = [], []
    for _ in range(repeats):
        plain.append(timed_ms(plain_fn))
        guided.append(timed_ms(guided_fn))
    return plain, guided


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes(fn) -> int:
    """Peak memory fn() uses above what is allocated before it."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        return torch.cuda.max_memory_allocated() - before
    before, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)
    thread = threading.Thread(target=sample)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(peak[0], _rss()) - before


def release_free_memory() -> None:
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_in_fresh_process(kind: str, n: int) -> dict:
    # a fixed mmap threshold: large tensors are mapped and unmapped, so the resident set follows live memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, __file__, "--latent", str(n), "--measure", kind], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent", type=int, default=32, help="latent side (image side / 8)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--measure", choices=("plain", "guided"), help=argparse.SUPPRESS)  # one memory measurement
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.latent
    plain_fn, guided_fn, unet = setup(n, record=args.measure != "plain")
    if args.measure:
        release_free_memory()
        print(json.dumps({"peak": peak_bytes(plain_fn if args.measure == "plain" else guided_fn)}))
        return
    weights = sum(t.numel() * t.element_size() for t in [*unet.parameters(), *unet.buffers()])
    plain, guided = interleaved(plain_fn, guided_fn, args.repeats)
    ratios = [g / p for p, g in zip(plain, guided)]
    memory = {kind: measure_in_fresh_process(kind, n)["peak"] for kind in ("plain", "guided")}
    mb = 1 / 2 ** 20
    print(f"latent {n}x{n} ({n * 8} px), CFG batch 2, torch threads {torch.get_num_threads()}, {args.repeats} pairs")
    print(f"  unguided step      {statistics.median(plain):8.1f} ms (median)   peak memory {memory['plain'] * mb:8.1f} MB")
    print(f"  STFG-guided step   {statistics.median(guided):8.1f} ms (median)   peak memory {memory['guided'] * mb:8.1f} MB")
    print(f"  ratio guided / unguided = {statistics.median(ratios):.2f} time (median of per-pair ratios), "
          f"{memory['guided'] / max(memory['plain'], 1):.2f} peak memory")
    print(f"  UNet weights {weights * mb:.1f} MB, copied for the guided step: 0 MB (autograd views of the loaded weights)")


if __name__ == "__main__":
    main()
