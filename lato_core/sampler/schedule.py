"""Shifted flow-matching time grid of the release (BFL FLUX / Step1X-Edit): t runs from 1 (noise) to 0 (image).

t_i = linspace(1, 0, steps + 1), then t' = e^mu / (e^mu + (1/t - 1)); t = 0 stays 0 and t = 1 stays 1.
mu is linear in the number of noisy image tokens N = (H/16) * (W/16): 0.5 at 256 tokens, 1.15 at 4096
(0.63 at 1024 tokens = 512x512). The same map written with a multiplicative shift s = e^mu is
t' = s t / (1 + (s - 1) t), the "shift" of diffusers' and ComfyUI's flow samplers.
"""
from __future__ import annotations

import math

import torch

BASE_TOKENS, BASE_MU = 256, 0.5
MAX_TOKENS, MAX_MU = 4096, 1.15


def mu_for_tokens(num_tokens: int) -> float:
    """The release's resolution-dependent mu: the line through (256, 0.5) and (4096, 1.15), not clamped."""
    slope = (MAX_MU - BASE_MU) / (MAX_TOKENS - BASE_TOKENS)
    return BASE_MU + slope * (num_tokens - BASE_TOKENS)


def time_shift(t: torch.Tensor, mu: float) -> torch.Tensor:
    """t' = e^mu / (e^mu + (1/t - 1)) elementwise in float32, as the release computes it (t = 0 -> 0)."""
    t = torch.as_tensor(t, dtype=torch.float32)
    e_mu = math.exp(mu)
    return e_mu / (e_mu + (1.0 / t - 1.0))   # 1/0 = inf gives exactly 0


def flow_schedule(steps: int, num_tokens: int, *, shift: float | None = None, mu: float | None = None,
                  ) -> torch.Tensor:
    """(steps + 1,) float32 times from 1 to 0, decreasing (float32 throughout, as the release).

    Default: mu from num_tokens (the release). Overrides: `mu` directly, or `shift` = s = e^mu
    (shift=1 gives the plain linear grid). Give at most one of them.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if shift is not None and mu is not None:
        raise ValueError("give either shift or mu, not both")
    if shift is not None:
        if shift <= 0:
            raise ValueError(f"shift must be positive, got {shift}")
        mu = math.log(shift)
    elif mu is None:
        mu = mu_for_tokens(num_tokens)
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float32)
    return time_shift(grid, mu)
