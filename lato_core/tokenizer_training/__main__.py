"""python -m lato_core.tokenizer_training --steps 3000 --out outputs/tokenizer/model.safetensors

Several GPUs: accelerate launch --multi_gpu -m lato_core.tokenizer_training --steps 100000 --batch 128
"""
from __future__ import annotations

import argparse
import sys

from .train import TrainConfig, train_tokenizer


def main(argv=None) -> int:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m lato_core.tokenizer_training",
                                description="Train a LaTo landmark tokenizer (VQ-VAE over 68 points) on landmark sets "
                                            "made from the shipped photos and the parametric predictor.")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch, help="landmark sets per step and process")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--code-dim", type=int, default=d.code_dim, help="token width (the release: 3072)")
    p.add_argument("--codebook-size", type=int, default=d.codebook_size, help="codes (the release: 8192)")
    p.add_argument("--channels", type=int, nargs=2, default=list(d.channels), metavar=("LOW", "HIGH"),
                   help="encoder widths, multiples of 32 (the release: 128 512)")
    p.add_argument("--res-blocks", type=int, default=d.num_res_blocks)
    p.add_argument("--beta", type=float, default=d.beta, help="commitment weight")
    p.add_argument("--reset-interval", type=int, default=d.reset_interval, help="dead-code check every N steps")
    p.add_argument("--pool", type=int, default=d.pool, help="landmark sets generated before training")
    p.add_argument("--photos", default=None, help="a folder of extra photos whose faces join the base faces")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is there")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default); 1 is "
                                                          "fastest for small models on a busy machine")
    p.add_argument("--out", default=d.out, help="safetensors file to write (release key layout)")
    a = p.parse_args(argv)
    if a.threads > 0:
        import torch
        torch.set_num_threads(a.threads)
    cfg = TrainConfig(steps=a.steps, batch=a.batch, lr=a.lr, code_dim=a.code_dim, codebook_size=a.codebook_size,
                      channels=tuple(a.channels), num_res_blocks=a.res_blocks, beta=a.beta,
                      reset_interval=a.reset_interval, pool=a.pool, photos=a.photos, seed=a.seed,
                      log_every=a.log_every, cpu=a.cpu, out=a.out)
    train_tokenizer(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
