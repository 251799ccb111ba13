"""Skin Transition Frequency Guidance (STFG), CA-Edit paper Eq. 7-10 / appendix Eq. 11-17, in ComfyUI sigma space.

Masks are 1 = edit (ComfyUI). Latents are (B, C, h, w); maps and masks are (B, h, w) at latent resolution.

Choices where the paper is ambiguous (all exposed):
- Eq. 11's text attention map and its tokens: see text_attention.py.
- Threshold: the main text (Eq. 7) takes mean and std of A_txt over the mask's elements (`rule="masked"`, default);
  appendix Eq. 13 divides sums of A_txt * M (zeros outside) by H*W (`rule="full_frame"`). Both use the population
  std (Eq. 13 says "variance" but writes a square root) and keep only positions inside the mask (M >= 0.5).
- Low-pass: Eq. 15's window H/2 < h < 3H/4 is one-sided and excludes DC; read as the centred box |k_h| < H/4,
  |k_w| < W/4 of the shifted spectrum (`radius=0.5`, radius = fraction of the Nyquist frequency), DC always kept.
- Eq. 10 / 17 print eps_hat = eps - lambda rho grad g, which *raises* g (the x0 it implies moves along +grad g);
  we take the descent direction eps_hat = eps + lambda rho grad_{z_t} g (score-based guidance with log p = -g).
- Eq. 9 loss: per sample, sum over boundary pixels of the squared channel norm / |Idx|; summed over the batch so
  each sample's gradient does not depend on the batch size.
- Step size (`STEP_RULES`). Eq. 10's step lambda rho_t grad g scales with 1/|Idx| and with the model's Jacobian, so
  no lambda suits small and large masks ("paper", kept for reference). The default "normalised" step keeps the
  paper's direction (grad_x g through the model) but sizes it in x0 space, where g is an exact quadratic: along the
  unit direction u, g(x0 - a u) = g - a A + a^2 C, minimised at a* = A / 2C. a* is clipped to a trust region
  (|a u| <= trust * ||LF discrepancy on the boundary||, trust 2: never move x0 much further than the error),
  and the step takes lambda / (1 + lambda) of it (a damped Newton step: lambda = 1 goes half-way, large lambda all
  the way, never past the minimum). Nothing in it depends on |Idx|, sigma or the scale of the model, and a larger
  lambda always lowers g more in one step.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

BOUNDARY_RULES = ("masked", "full_frame")
STEP_RULES = ("normalised", "paper")
TRUST = 2.0  # a step never moves x0 further than twice the size of the discrepancy it corrects


def boundary_region(text_attn_map: torch.Tensor, mask: torch.Tensor, rule: str = "masked") -> torch.Tensor:
    """Eq. 7 / 12-13: mask positions whose mean text attention is <= mu - sigma. (B, h, w) each -> float 0/1."""
    if rule not in BOUNDARY_RULES:
        raise ValueError(f"rule must be one of {BOUNDARY_RULES}")
    attn = text_attn_map.float()
    inside = (mask.float() >= 0.5).expand_as(attn)
    dims = (-2, -1)
    if rule == "masked":
        count = inside.sum(dims, keepdim=True).clamp(min=1)
        mu = torch.where(inside, attn, 0.0).sum(dims, keepdim=True) / count
        var = torch.where(inside, (attn - mu) ** 2, 0.0).sum(dims, keepdim=True) / count
    else:
        masked = attn * mask.float()
        mu = masked.mean(dims, keepdim=True)
        var = ((masked - mu) ** 2).mean(dims, keepdim=True)
    return (inside & (attn <= mu - var.sqrt())).float()


def low_frequency(x: torch.Tensor, radius: float = 0.5) -> torch.Tensor:
    """Low-pass over the last two dims: keep |k_h| < radius * H/2 and |k_w| < radius * W/2 (a box in the shifted
    FFT, radius as a fraction of Nyquist; 0.5 = the paper's H/4 half-width) plus DC. Differentiable."""
    h, w = x.shape[-2:]
    kh = torch.fft.fftshift(torch.fft.fftfreq(h, device=x.device)) * h  # integer frequencies, centred
    kw = torch.fft.fftshift(torch.fft.fftfreq(w, device=x.device)) * w
    keep_h = (kh.abs() < radius * h / 2) | (kh == 0)
    keep_w = (kw.abs() < radius * w / 2) | (kw == 0)
    window = (keep_h[:, None] & keep_w[None, :]).float()
    spectrum = torch.fft.fftshift(torch.fft.fft2(x.float()), dim=(-2, -1)) * window
    return torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1))).real.to(x.dtype)


def stfg_loss(x0_hat: torch.Tensor, source_latent: torch.Tensor, boundary: torch.Tensor, radius: float = 0.5,
              reduction: str = "sum") -> torch.Tensor:
    """Eq. 9 / 16: g = 1/|Idx| sum_{Idx} ||LF(x0_hat) - LF(z0)||^2 (norm over channels). Latents (B, C, h, w),
    boundary (B, h, w). reduction "sum" over the batch or "none" -> (B,). Empty boundary gives 0."""
    diff = (low_frequency(x0_hat, radius) - low_frequency(source_latent, radius)) ** 2
    region = boundary.to(diff.dtype)[:, None]
    per_sample = (diff * region).sum(dim=(1, 2, 3)) / region.sum(dim=(1, 2, 3)).clamp(min=1)
    return per_sample if reduction == "none" else per_sample.sum()


def default_rho(sigma: torch.Tensor) -> torch.Tensor:
    """rho_t = sqrt(1 - alpha_bar_t) = sigma / sqrt(1 + sigma^2) (the classifier-guidance weight)."""
    return sigma / torch.sqrt(1.0 + sigma ** 2)


def normalised_step(grad_x: torch.Tensor, grad_x0: torch.Tensor, x0_hat: torch.Tensor, source_latent: torch.Tensor,
                    boundary: torch.Tensor, strength: float, radius: float = 0.5, trust: float = TRUST) -> torch.Tensor:
    """The x0-space change of the "normalised" rule (module doc), per sample: grad_x = d g / d x (the direction),
    grad_x0 = d g / d x0_hat, latents (B, C, h, w), boundary (B, h, w). Returns delta with x0_guided = x0_hat - delta."""
    dims = (1, 2, 3)
    norm = grad_x.float().flatten(1).norm(dim=1).clamp(min=1e-30).reshape(-1, 1, 1, 1)
    u = grad_x.float() / norm
    region = boundary.float()[:, None]
    count = region.sum(dim=dims).clamp(min=1)
    slope = (grad_x0.float() * u).sum(dim=dims)                            # A: dg / da at a = 0
    curvature = (low_frequency(u, radius) ** 2 * region).sum(dim=dims) / count  # C
    best = torch.where((slope > 0) & (curvature > 0), slope / (2 * curvature.clamp(min=1e-30)), 0.0)
    discrepancy = ((low_frequency(x0_hat.float(), radius) - low_frequency(source_latent.float(), radius)) ** 2
                   * region).sum(dim=dims).sqrt()
    size = torch.minimum(best, trust * discrepancy) * (strength / (1.0 + strength))
    return (size.reshape(-1, 1, 1, 1) * u).to(x0_hat.dtype)


def stfg_guidance(x: torch.Tensor, sigma: torch.Tensor | float, denoise_fn: Callable[[torch.Tensor], torch.Tensor],
                  source_latent: torch.Tensor, boundary: torch.Tensor, strength: float, step: str = "normalised",
                  rho: Callable[[torch.Tensor], torch.Tensor] | float = default_rho, radius: float = 0.5,
                  return_loss: bool = False):
    """One STFG step at a ComfyUI sample x (k-diffusion convention, eps models: x = x0 + sigma * eps).

    denoise_fn(x) -> the model's denoised prediction at this sigma (differentiable). Returns the guided denoised
    (and the loss before guidance with `return_loss`), detached; works inside torch.inference_mode().
    step "normalised" (default): normalised_step, rho unused. step "paper": Eq. 14-17 translated (VP / eps):
      z_t = sqrt(abar) x with abar = 1 / (1 + sigma^2), so z_hat_{t->0} (Eq. 14) = x - sigma eps = denoised(x),
      grad_{z_t} g = sqrt(1 + sigma^2) grad_x g, eps_hat = eps + lambda rho_t grad_{z_t} g (descent sign), i.e.
      denoised_hat = denoised - lambda rho(sigma) sigma sqrt(1 + sigma^2) grad_x g
    (default rho = sigma / sqrt(1 + sigma^2): denoised_hat = denoised - lambda sigma^2 grad_x g).
    The graph (through the model) is built on a fresh leaf clone and freed before returning. x, sigma, the source
    and the boundary may be inference tensors; anything else denoise_fn combines with x (weights, conds) must not
    be, or autograd refuses to save it for backward (see stfg_stepper.autograd_views).
    """
    if step not in STEP_RULES:
        raise ValueError(f"step must be one of {STEP_RULES}")
    with torch.inference_mode(False), torch.enable_grad():
        x_leaf = x.detach().clone().requires_grad_(True)
        sig = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).clone().reshape(-1)
        sig = sig.expand(x.shape[0]).reshape(-1, *([1] * (x.ndim - 1)))
        source = source_latent.detach().clone()
        region = boundary.detach().clone()
        denoised = denoise_fn(x_leaf)
        loss = stfg_loss(denoised, source, region, radius)
        if step == "normalised":
            grad_x, grad_x0 = torch.autograd.grad(loss, (x_leaf, denoised))  # retain_graph=False frees the graph
            delta = normalised_step(grad_x, grad_x0, denoised.detach(), source, region, strength, radius)
        else:
            grad_x, = torch.autograd.grad(loss, x_leaf)
            rho_t = rho(sig) if callable(rho) else torch.full_like(sig, float(rho))
            delta = (strength * rho_t * sig * torch.sqrt(1.0 + sig ** 2)).to(grad_x.dtype) * grad_x
        guided = (denoised.detach() - delta).detach()
        loss_value = loss.detach()
    return (guided, loss_value) if return_loss else guided
