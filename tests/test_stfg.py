"""STFG (CA-Edit Eq. 7-10, 11-17) in sigma space: the boundary, the low-pass, the paper's step and the normalised
step (one default for small and large masks), and the feathered paste."""
from __future__ import annotations

import math

import pytest
import torch

from caedit_core.blend import paste_pixels
from caedit_core.stfg import boundary_region, default_rho, low_frequency, stfg_guidance, stfg_loss
from caedit_core.text_attention import mean_text_attention, prompt_token_positions, token_selection

H = W = 16
LAMBDA = 10.0  # paper step: g is a per-pixel mean (1/|Idx|), so useful strengths are of the order of |Idx|
LAMBDAS = (0.01, 0.1, 1.0, 10.0)  # normalised step: three orders of magnitude


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


def _toy(seed=0, dtype=torch.float32, half=5, size=H, scale=1.0):
    """Gaussian-posterior denoiser around a smooth prior, slightly non-linear, its output times `scale` (a model
    of another scale); square mask of half-width `half`; attention peaked in the middle of the mask, so the
    boundary region is the mask's rim."""
    g = torch.Generator().manual_seed(seed)
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size, dtype=dtype), torch.arange(size, dtype=dtype), indexing="ij")
    mask = (((yy - c).abs() <= half) & ((xx - c).abs() <= half)).to(dtype)[None]
    attn = torch.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (0.7 * half ** 2))[None]
    prior = low_frequency(torch.randn(1, 4, size, size, generator=g, dtype=dtype), 0.3) * 3
    source = torch.randn(1, 4, size, size, generator=g, dtype=dtype)
    noise = torch.randn(1, 4, size, size, generator=g, dtype=dtype)

    def denoise(x, sigma):
        return scale * ((x + sigma ** 2 * prior) / (1 + sigma ** 2) + 0.1 * torch.tanh(x))
    return mask, boundary_region(attn, mask), prior, source, noise, denoise


def _toy_sample(toy, strength, step="normalised", steps=10):
    """Euler from sigma 3 to 0 with STFG and Blended Diffusion (the source noised to each sigma outside the mask)."""
    mask, boundary, prior, source, noise, denoise = toy
    sigmas = torch.linspace(3.0, 0.0, steps + 1)
    m = mask[:, None]
    x = prior + sigmas[0] * noise
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = stfg_guidance(x, s, lambda z: denoise(z, s), source, boundary, strength, step=step)
        x = x + (x - d) / s * (s_next - s)  # Euler
        x = (source + s_next * noise) * (1 - m) + x * m
    return x


def test_one_stfg_step_lowers_low_frequency_discrepancy_on_boundary():
    mask, boundary, prior, source, noise, denoise = _toy()
    assert boundary.sum() > 0 and bool((boundary <= mask).all())
    sigma, sigma_next = 2.0, 1.5
    x = prior + sigma * noise
    plain = denoise(x, sigma)
    guided, loss = stfg_guidance(x, sigma, lambda z: denoise(z, sigma), source, boundary, LAMBDA, step="paper",
                                 return_loss=True)
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
    got = stfg_guidance(x, sigma, lambda v: denoise(v, sigma), source, boundary, LAMBDA, step="paper",
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


def test_toy_sampling_with_blending_and_stfg_keeps_source_outside_mask():
    toy = _toy()
    mask, boundary, _, source, _, _ = toy
    guided, plain = _toy_sample(toy, 1.0), _toy_sample(toy, 0.0)
    outside = (mask == 0).expand_as(guided[0])[None]
    assert (guided - source)[outside].abs().max() <= 1e-6  # latent tolerance: float32, last blend at sigma 0
    assert stfg_loss(guided, source, boundary) < 0.5 * stfg_loss(plain, source, boundary)


@pytest.mark.parametrize("half, size, scale", [(2, 16, 1.0), (5, 16, 1.0), (13, 32, 1.0), (5, 16, 20.0)])
def test_normalised_step_one_default_for_small_and_large_masks_and_any_model_scale(half, size, scale):
    """The low-frequency discrepancy after sampling falls monotonically across lambda 0.01 .. 10, and lambda 1 at
    least halves it, for masks of 25 to 729 pixels (boundaries of 4 to 108) and for a model whose output is 20 times larger."""
    toy = _toy(half=half, size=size, scale=scale)
    boundary, source = toy[1], toy[3]
    assert boundary.sum() > 0
    losses = [float(stfg_loss(_toy_sample(toy, lam), source, boundary)) for lam in (0.0, *LAMBDAS)]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[LAMBDAS.index(1.0) + 1] < 0.5 * losses[0], losses
    assert all(math.isfinite(v) for v in losses)


def test_paper_step_depends_on_the_mask_size_and_the_normalised_step_does_not():
    """Why the default changed: one step at sigma 2 with Eq. 10's step, lambda 30, makes a 4-pixel boundary 4x
    worse and helps a 108-pixel one; the normalised step does the same on both at every lambda."""
    def one_step(toy, lam, step):
        mask, boundary, prior, source, noise, denoise = toy
        x = prior + 2.0 * noise
        plain = stfg_loss(denoise(x, 2.0), source, boundary)
        guided = stfg_guidance(x, 2.0, lambda z: denoise(z, 2.0), source, boundary, lam, step=step)
        return float(stfg_loss(guided, source, boundary) / plain)
    small, large = _toy(half=2), _toy(half=13, size=32)
    assert small[1].sum() == 4 and large[1].sum() == 108
    assert one_step(small, 30.0, "paper") > 2.0 and one_step(large, 30.0, "paper") < 0.5
    curves = [[one_step(toy, lam, "normalised") for lam in (0.0, *LAMBDAS, 1000.0)] for toy in (small, large)]
    for ratios in curves:
        assert all(b < a for a, b in zip(ratios, ratios[1:])) and ratios[-1] > 0, ratios
    assert max(abs(a - b) for a, b in zip(*curves)) < 0.05, curves


def test_prompt_tokens_leave_out_start_end_and_padding():
    chunk = [(49406, 1.0), (320, 1.0), (1125, 1.2), (49407, 1.0)] + [(49407, 1.0)] * 73
    assert prompt_token_positions(chunk) == [1, 2]
    assert prompt_token_positions([49406, 7, 49407, 49407]) == [1]
    assert token_selection("auto", [1, 2]) == [1, 2] and token_selection("auto", None) == slice(1, None)
    assert token_selection("all") is None
    with pytest.raises(ValueError, match="prompt"):
        token_selection("prompt", None)
    attn = torch.zeros(1, 4, 77)
    attn[0, :2, 1] = 1.0  # word 1 attends to the top row only
    attn[0, :, 5:] = 0.5  # padding everywhere
    words = mean_text_attention([attn], 2, 2, token_selection("prompt", [1, 2]))
    assert torch.equal(words, torch.tensor([[[0.5, 0.5], [0.0, 0.0]]]))


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
