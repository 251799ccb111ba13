"""CA-Edit's ComfyUI patches among other packs' patches, and STFG through ComfyUI's real UNetModel (the tiny
SD1.5-shaped one, weights created under inference_mode as ComfyUI loads them)."""
import pytest
import torch

from caedit_core.ca2 import CA2Call, ca2_visual_term, expand_to_batch, layer_grid, mask_to_tokens, pooled_text_token
from caedit_core.comfy_guider import stfg_guider
from caedit_core.comfy_patches import CAEDIT_KEY, Attn2Patch, attn2_keys, comfy_attention, install_attn2
from caedit_core.stfg import stfg_loss
from caedit_core.stfg_stepper import STFGStepper
from tiny_sd15 import cfg_denoiser, comfy_unet, tiny_adapter, tiny_unet

N = 16  # latent side


class IPAdapterStyle:
    """Stands in for another pack's attn2 replace patch (IPAdapter_plus' Attn2Replace): ComfyUI's attention plus a
    term of its own; counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, q, k, v, extra_options):
        self.calls += 1
        return comfy_attention(q, k, v, extra_options) + 0.01 * q


@pytest.fixture(scope="module")
def patcher():
    unet = comfy_unet(0)
    import comfy.model_patcher

    holder = torch.nn.Module()
    holder.diffusion_model = unet
    return comfy.model_patcher.ModelPatcher(holder, torch.device("cpu"), torch.device("cpu"))


def _attn2(mp) -> dict:
    return mp.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})


def test_ca2_adds_to_a_patch_installed_before_it_and_that_patch_still_runs(patcher):
    adapter = tiny_adapter(1, "unet", refnet=False, unet=tiny_unet(0))
    name, layer = next(iter(adapter.layers().items()))
    work = patcher.clone()
    key = attn2_keys(work)[0]
    other = IPAdapterStyle()
    work.set_model_attn2_replace(other, *key)
    install_attn2(work, key, module=layer)
    patch = _attn2(work)[key]
    assert isinstance(patch, Attn2Patch) and patch.inner is other
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 64, 320, generator=g), torch.randn(2, 77, 320, generator=g), torch.randn(2, 77, 320, generator=g)
    tokens, context = torch.randn(1, 257, 1024, generator=g), torch.randn(2, 77, 768, generator=g)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    call = CA2Call(expand_to_batch(tokens, 2, [0, 1], True), pooled_text_token(context), expand_to_batch(mask, 2, [0, 1]),
                   (8, 8), strength=0.8)
    extra = {"n_heads": 8, "attn_precision": None, "cond_or_uncond": [0, 1], CAEDIT_KEY: {"ca2_call": call}}
    got = patch(q, k, v, extra)
    assert other.calls == 1
    k_vis, v_vis = layer.visual_kv(call.image_tokens)
    score = layer.score_predictor(q, call.pooled_text)
    term = ca2_visual_term(q, k_vis, v_vis, score, mask_to_tokens(call.mask, *layer_grid(64, 8, 8)), 8, 0.8)
    assert torch.allclose(got, other(q, k, v, extra) + term, atol=1e-6)  # added to the other pack's output
    assert term.abs().max() > 1e-3
    off = dict(extra, **{CAEDIT_KEY: {"ca2_call": CA2Call(call.image_tokens, call.pooled_text, call.mask, (8, 8), 0.0)}})
    assert torch.equal(patch(q, k, v, off), other(q, k, v, off))  # strength 0: exactly the other pack's patch


def test_a_pack_adding_to_our_patch_afterwards_runs_in_its_sigma_range(patcher):
    patch = Attn2Patch(None, None)
    seen = []
    patch.add(lambda out, q, k, v, extra, **kw: seen.append(kw["weight"]) or kw["weight"] * torch.ones_like(out),
              weight=0.5, sigma_start=10.0, sigma_end=1.0)
    q = torch.randn(1, 64, 320)
    extra = {"n_heads": 8, "attn_precision": None}
    base = comfy_attention(q, q, q, extra)
    assert torch.equal(patch(q, q, q, {**extra, "sigmas": torch.tensor([5.0])}), base + 0.5)
    assert torch.equal(patch(q, q, q, {**extra, "sigmas": torch.tensor([20.0])}), base)
    assert seen == [0.5]


def test_stfg_guider_patches_nothing_at_strength_0_and_wraps_other_patches_otherwise(patcher):
    work = patcher.clone()
    keys = attn2_keys(work)
    other = IPAdapterStyle()
    for key in keys:
        work.set_model_attn2_replace(other, *key)
    mask = torch.ones(1, 8 * N, 8 * N)
    plain = stfg_guider(patcher, [], [], 7.5, STFGStepper(mask, 0.0))
    assert _attn2(plain.model_patcher) == {}
    guided = stfg_guider(work, [], [], 7.5, STFGStepper(mask, 2.0))
    patches = _attn2(guided.model_patcher)
    assert set(patches) == set(keys)  # (clone() deep-copies model_options, so the wrapped patch is a copy)
    assert all(isinstance(p.inner, IPAdapterStyle) and p.recorder is not None for p in patches.values())
    assert all(p is other for p in _attn2(work).values())  # the source MODEL is unchanged


def _euler(patcher, strength, sigmas=(3.0, 2.0, 1.2, 0.6, 0.0)):
    """Euler sampling with CFG and STFG through the tiny UNet with the recorder patches of the guider; returns the
    final latent, the first guided step's boundary and the source."""
    work = patcher.clone()
    stepper = STFGStepper(torch.zeros(1, 8 * N, 8 * N), strength)
    stepper.mask[:, 32:96, 32:96] = 1
    guider = stfg_guider(work, [], [], 7.5, stepper)
    unet = work.get_model_object("diffusion_model")
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        x = torch.randn(1, 4, N, N, generator=g) * sigmas[0]
        concat = torch.randn(1, 5, N, N, generator=g)
        context = torch.randn(2, 77, 768, generator=g)
        source = torch.randn(1, 4, N, N, generator=g)
    options = {**guider.model_patcher.model_options["transformer_options"], "cond_or_uncond": [0, 1]}
    predict = cfg_denoiser(unet, concat, context, options)

    first = None
    with torch.inference_mode():
        stepper.reset(source)
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            sigma = torch.tensor([s])
            d = stepper(x, sigma, predict, unet) if strength else predict(x, sigma)
            first = stepper.last_boundary if first is None else first
            x = x + (x - d) / s * (s_next - s)
    return x, first, source


def test_stfg_through_the_tiny_unet_lowers_the_discrepancy_monotonically_in_lambda(patcher):
    """The issue's case (ComfyUI's UNet + Euler; Eq. 10's step gave 4e4 at lambda 1): now the final low-frequency
    discrepancy on the boundary falls monotonically from lambda 0 over 0.01 .. 10, never blowing up."""
    _, boundary, source = _euler(patcher, 1e-6)  # the boundary of the first step is the same for every lambda
    assert 0 < boundary.sum() < 64
    losses = [float(stfg_loss(_euler(patcher, lam)[0], source, boundary)) for lam in (0.0, 0.01, 0.1, 1.0, 10.0)]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0], losses


def test_a_joint_softmax_adapter_runs_alone_and_is_refused_on_top_of_another_patch(patcher):
    from caedit_core.ca2 import CA2Attention, CA2Config, ca2_attention

    torch.manual_seed(2)
    layer = CA2Attention(CA2Config(inner_dim=64, heads=4, clip_dim=16, latent_dim=64, pooled_text_dim=32,
                                   score_hidden_dim=8, softmax_over="joint"))
    q, k, v = torch.randn(1, 16, 64), torch.randn(1, 5, 64), torch.randn(1, 5, 64)
    call = CA2Call(torch.randn(1, 3, 16), torch.randn(1, 32), torch.ones(1, 4, 4), (4, 4), strength=1.0)
    extra = {"n_heads": 4, "attn_precision": None, CAEDIT_KEY: {"ca2_call": call}}
    k_vis, v_vis = layer.visual_kv(call.image_tokens)
    want = ca2_attention(q, k, v, k_vis, v_vis, layer.score_predictor(q, call.pooled_text),
                         mask_to_tokens(call.mask, 4, 4), 4, "joint")
    with torch.no_grad():
        assert torch.allclose(Attn2Patch(layer)(q, k, v, extra), want, atol=1e-6)
        with pytest.raises(ValueError, match="joint"):
            Attn2Patch(layer, inner=IPAdapterStyle())(q, k, v, extra)
