"""Cost of one STFG-guided sampling step relative to an unguided one, side by side in one run.

python bench/bench_stfg.py [--latent 32] [--repeats 5]
Both steps run ComfyUI's own UNetModel (the tiny SD1.5-shaped one of tests/tiny_sd15.py, weights created under
inference_mode as ComfyUI loads them) on a CFG batch (cond + uncond) inside torch.inference_mode(). The guided
step is what STFGGuider does from its second step on: forward with graph through grad-safe weight copies,
text-attention recording, boundary, backward to z_t. Prints milliseconds (median) and the median of per-pair ratios (pairs alternate, so background load
hits both alike).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from caedit_core.comfy_patches import Attn2Patch, STFGStepper  # noqa: E402
from tiny_sd15 import import_comfy, tiny_unet, unet_to_ldm  # noqa: E402


def comfy_unet():
    import_comfy()
    import comfy.model_detection
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    ldm = unet_to_ldm(tiny_unet(0))
    config = comfy.model_detection.detect_unet_config(ldm, "")
    config.update(num_heads=8, num_head_channels=-1)
    with torch.inference_mode():  # as ComfyUI's loaders do
        model = UNetModel(**config, operations=comfy.ops.disable_weight_init)
        model.load_state_dict(ldm)
    return model.eval()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent", type=int, default=32, help="latent side (image side / 8)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    unet = comfy_unet()
    n = args.latent
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        x = torch.randn(1, 4, n, n, generator=g) * 3
        concat = torch.randn(1, 5, n, n, generator=g)
        context = torch.randn(2, 77, 768, generator=g)
        source = torch.randn(1, 4, n, n, generator=g)
        mask = torch.zeros(1, n * 8, n * 8)
        mask[:, n * 2:n * 6, n * 2:n * 6] = 1
    stepper = STFGStepper(mask, strength=30.0)
    keys = [("input", 1, 0), ("middle", 0, 0), ("output", 0, 0), ("output", 1, 0)]
    options = {"cond_or_uncond": [0, 1], "patches_replace": {"attn2": {k: Attn2Patch(None, stepper.recorder) for k in keys}}}

    def predict(z, sigma, cfg=7.5):
        s = sigma.reshape(-1, 1, 1, 1)
        zin = torch.cat([z, concat], 1).repeat(2, 1, 1, 1) / (1 + s ** 2).sqrt()
        eps_c, eps_u = unet(zin, timesteps=torch.full((2,), 500.0), context=context, transformer_options=options).chunk(2)
        return z - s * (eps_u + cfg * (eps_c - eps_u))

    sigma = torch.tensor([3.0])
    with torch.inference_mode():
        stepper.reset(source)
        stepper(x, sigma, predict, unet)  # first guided step: recording pass + weight copies (once per run)
        plain, guided = interleaved(lambda: predict(x, sigma), lambda: stepper(x, sigma, predict, unet), args.repeats)
    ratios = [g / p for p, g in zip(plain, guided)]
    print(f"latent {n}x{n} ({n * 8} px), CFG batch 2, torch threads {torch.get_num_threads()}, {args.repeats} pairs")
    print(f"  unguided step      {statistics.median(plain):8.1f} ms (median)")
    print(f"  STFG-guided step   {statistics.median(guided):8.1f} ms (median)")
    print(f"  ratio guided / unguided = {statistics.median(ratios):.2f} (median of per-pair ratios)")


if __name__ == "__main__":
    main()
