"""STFG (CA-Edit Eq. 7-10, 11-17) in sigma space, and the Blended Diffusion blend / feathered paste."""
from __future__ import annotations

import math

import pytest
import torch

from caedit_core.blend import blend_latents, noise_source, paste_pixels
from caedit_core.stfg import (boundary_region, default_rho, low_frequency, mean_text_attention, stfg_guidance,
                              stfg_loss)

H = W = 16
LAMBDA = 10.0  # g is a per-pixel mean (1/|Idx|), so useful strengths are of the order of |Idx|


def test_boundary_region_hand_example():
    attn = torch.tensor([[[0.9, 0.1, 0.0], [0.5, 0.6, 0.0], [0.8, 0.0, 0.05]]])
    mask = torch.tensor([[[1., 1., 0.], [1., 1., 0.], [1., 0., 0.]]])
    # inside: 0.9 0.1 0.5 0.6 0.8 -> mu = 0.58, sigma = sqrt(0.388 / 5) = 0.2786, threshold 0.3014:
    # only the 0.1; the zeros outside the mask are below it too but are not mask positions.
    want = torch.tensor([[[0., 1., 0.], [0., 0., 0.], [0., 0., 0.]]])
    assert torch.equal(boundary_region(attn, mask), want)
    # appendix Eq. 13 over the full frame: mu = 2.9 / 9 = 0.3222, sigma = sqrt(1.1356 / 9) = 0.3552,
    # threshold -0.033 -> empty (why the main-text rule is the default)
    assert boundary_region(attn, mask, rule="full_frame").sum() == 0
    assert boundary_region(attn, torch.zeros_like(mask)).sum() == 0


def test_mean_text_attention_drops_start_token_and_upsamples_layers():
    torch.manual_seed(0)
    fine = torch.randn(1, 16, 6).softmax(-1)  # 4x4 layer, 6 tokens
    coarse = torch.full((1, 4, 6), 1 / 6)  # 2x2 layer, uniform
    everything = mean_text_attention([fine, coarse], 4, 4, token_indices=None)
    assert torch.allclose(everything, torch.full((1, 4, 4), 1 / 6))  # all tokens: constant, no information
    got = mean_text_attention([fine, coarse], 4, 4)
    want = ((1 - fine[..., 0]) / 5).reshape(1, 4, 4) / 2 + 1 / 12
    assert torch.allclose(got, want, atol=1e-6)


def test_low_frequency_keeps_constant_and_removes_checkerboard():
    const = torch.full((2, 4, H, W), 0.7)
    checker = (-1.0) ** (torch.arange(H)[:, None] + torch.arange(W)[None]).float()
    wave = torch.cos(2 * math.pi * torch.arange(W) / W).expand(H, W)  # k = 1, inside the band
    assert torch.allclose(low_frequency(const), const, atol=1e-6)
    assert low_frequency(checker).abs().max() < 1e-6
    assert torch.allclose(low_frequency(const + checker + wave), const + wave, atol=1e-5)
    fast = torch.cos(2 * math.pi * 5 * torch.arange(W) / W).expand(H, W)  # k = 5 >= 0.5 * 16 / 2
    assert low_frequency(fast).abs().max() < 1e-6 and torch.allclose(low_frequency(fast, radius=0.75), fast,
                                                                       atol=1e-5)


def _toy(seed=0, dtype=torch.float32):
    """Gaussian-posterior denoiser around a smooth prior, slightly non-linear; square mask; attention peaked in
    the middle of the mask, so the boundary region is the mask's rim."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(H, dtype=dtype), torch.arange(W, dtype=dtype), indexing="ij")
    mask = (((yy - 7.5).abs() <= 5) & ((xx - 7.5).abs() <= 5)).to(dtype)[None]
    attn = torch.exp(-((yy - 7.5) ** 2 + (xx - 7.5) ** 2) / 18.0)[None]
    prior = low_frequency(torch.randn(1, 4, H, W, generator=g, dtype=dtype), 0.3) * 3
    source = torch.randn(1, 4, H, W, generator=g, dtype=dtype)
    noise = torch.randn(1, 4, H, W, generator=g, dtype=dtype)

    def denoise(x, sigma):
        return (x + sigma ** 2 * prior) / (1 + sigma ** 2) + 0.1 * torch.tanh(x)
    return mask, boundary_region(attn, mask), prior, source, noise, denoise


def test_one_stfg_step_lowers_low_frequency_discrepancy_on_boundary():
    mask, boundary, prior, source, noise, denoise = _toy()
    assert boundary.sum() > 0 and bool((boundary <= mask).all())
    sigma, sigma_next = 2.0, 1.5
    x = prior + sigma * noise
    plain = denoise(x, sigma)
    guided, loss = stfg_guidance(x, sigma, lambda z: denoise(z, sigma), source, boundary, LAMBDA, return_loss=True)
    g_plain, g_guided = stfg_loss(plain, source, boundary), stfg_loss(guided, source, boundary)
    assert torch.isclose(loss, g_plain)
    assert g_guided < 0.5 * g_plain
    euler = lambda d: x + (x - d) / sigma * (sigma_next - sigma)  # noqa: E731
    after_plain = stfg_loss(denoise(euler(plain), sigma_next), source, boundary)
    after_guided = stfg_loss(denoise(euler(guided), sigma_next), source, boundary)
    assert after_guided < 0.97 * after_plain


@pytest.mark.parametrize("rho", [None, 0.3])
def test_sigma_space_guidance_equals_paper_eps_formula(rho):
    """Eq. 8 and 10 in the paper's variables (z_t, alpha_bar, eps) against the sigma-space implementation."""
    mask, boundary, prior, source, noise, denoise = _toy(seed=1, dtype=torch.float64)
    sigma = 1.7
    x = prior + sigma * noise
    abar = 1 / (1 + sigma ** 2)
    z = (math.sqrt(abar) * x).requires_grad_(True)
    eps = (z / math.sqrt(abar) - denoise(z / math.sqrt(abar), sigma)) / sigma  # the model's eps at z_t

    def x0_of(e):  # Eq. 8
        return (z - math.sqrt(1 - abar) * e) / math.sqrt(abar)
    grad_z, = torch.autograd.grad(stfg_loss(x0_of(eps), source, boundary), z)
    rho_t = math.sqrt(1 - abar) if rho is None else rho
    want = x0_of(eps + LAMBDA * rho_t * grad_z).detach()  # descent sign
    got = stfg_guidance(x, sigma, lambda v: denoise(v, sigma), source, boundary, LAMBDA,
                        rho=default_rho if rho is None else rho)
    assert torch.allclose(got, want, atol=1e-10)
    printed_sign = x0_of(eps - LAMBDA * rho_t * grad_z).detach()  # Eq. 10 as printed raises g
    g0 = stfg_loss(x0_of(eps).detach(), source, boundary)
    assert stfg_loss(printed_sign, source, boundary) > g0 > stfg_loss(got, source, boundary)


def test_stfg_inside_inference_mode_leaves_no_graph():
    torch.manual_seed(0)
    model = torch.nn.Conv2d(4, 4, 3, padding=1)  # weights made outside, as a loaded model's
    mask, boundary, prior, source, noise, _ = _toy()
    reference = stfg_guidance(prior + 2 * noise, torch.tensor([2.0]), model, source, boundary, LAMBDA)
    with torch.inference_mode():  # ComfyUI runs nodes like this: every input is an inference tensor
        x, src, bnd, sigma = prior + 2 * noise, source.clone(), boundary.clone(), torch.tensor([2.0])
        guided = stfg_guidance(x, sigma, model, src, bnd, LAMBDA)
        assert torch.is_inference_mode_enabled() and not torch.is_grad_enabled()
        plain = model(x)
    assert guided.grad_fn is None and not guided.requires_grad
    assert x.grad_fn is None and not x.requires_grad and x.grad is None
    assert all(p.grad is None for p in model.parameters())
    assert torch.allclose(guided, reference, atol=1e-6)
    assert (guided - plain).abs().max() > 1e-3


def test_blend_is_source_outside_and_x_inside_exactly():
    torch.manual_seed(0)
    x, src = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    mask = torch.zeros(2, 64, 64)
    mask[:, 16:40, 8:32] = 1.0  # pixel MASK aligned to the 8x8 latent cells
    out = blend_latents(x, src, mask)
    inside = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    inside[:, :, 2:5, 1:4] = True
    assert torch.equal(out, torch.where(inside, x, src))
    mask[:, 16:20, 32:36] = 1.0  # a quarter of latent cell (2, 4)
    soft = blend_latents(x, src, mask)
    assert torch.allclose(soft[:, :, 2, 4], 0.75 * src[:, :, 2, 4] + 0.25 * x[:, :, 2, 4])


def test_toy_sampling_with_blending_and_stfg_keeps_source_outside_mask():
    mask, boundary, prior, source, noise, denoise = _toy()
    sigmas = torch.linspace(3.0, 0.0, 11)

    def sample(strength):
        x = noise_source(prior, noise, sigmas[0])
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            d = stfg_guidance(x, s, lambda z: denoise(z, s), source, boundary, strength)
            x = x + (x - d) / s * (s_next - s)  # Euler
            x = blend_latents(x, noise_source(source, noise, s_next), mask)
        return x
    guided, plain = sample(LAMBDA), sample(0.0)
    outside = (mask == 0).expand_as(guided[0])[None]
    assert (guided - source)[outside].abs().max() <= 1e-6  # latent tolerance: float32, last blend at sigma 0
    assert stfg_loss(guided, source, boundary) < 0.7 * stfg_loss(plain, source, boundary)


def test_paste_pixels_feathers_inward_only():
    torch.manual_seed(0)
    edited, source = torch.rand(1, 32, 32, 3), torch.rand(1, 32, 32, 3)
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:24, 8:24] = 1.0
    out = paste_pixels(edited, source, mask, feather=4)
    assert torch.equal(out[:, mask[0] == 0], source[:, mask[0] == 0])
    assert torch.equal(out[:, 12:20, 12:20], edited[:, 12:20, 12:20])  # depth >= 4
    for depth in (1, 2, 3):  # linear ramp: alpha = depth / feather
        r = 8 + depth - 1
        want = source[:, r, 16] * (1 - depth / 4) + edited[:, r, 16] * depth / 4
        assert torch.allclose(out[:, r, 16], want, atol=1e-6)
