"""Reference net and the ComfyUI patch callables: zero-init leaves the UNet unchanged, the output_block_patch wires
residuals exactly where diffusers adds them, and CA2 through ComfyUI's real UNetModel (attn2 replace patches +
DIFFUSION_MODEL wrapper) equals CA2 through diffusers processors (the training path), for both placements."""
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from caedit_core.ca2 import CA2Call, expand_to_batch, pooled_text_token
from caedit_core.comfy_patches import CAEDIT_KEY, Attn2Patch, CAEditUNetWrapper, refnet_output_block_patch
from caedit_core.stfg_stepper import STFGStepper, autograd_views
from caedit_core.text_attention import TextAttentionRecorder
from caedit_core.refnet import (CallHolder, ReferenceNet, comfy_attn2_key, masked_condition, set_ca2_processors,
                                skip_channels)
import tiny_sd15
from tiny_sd15 import tiny_adapter, tiny_unet

SMALL = dict(sample_size=8, block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D",) * 2,
             up_block_types=("CrossAttnUpBlock2D",) * 2, cross_attention_dim=32, layers_per_block=1)


@pytest.fixture(scope="module")
def unets():
    """The same small inpainting UNet as diffusers and as ComfyUI's own UNetModel (LDM weights via its key map)."""
    return tiny_unet(0, **SMALL), tiny_sd15.comfy_unet(0, inference=False, **SMALL)


def _inputs(seed=0, batch=2, clip_dim=1024):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(batch, 9, 8, 8, generator=g), "t": torch.tensor([500.0] * batch),
            "ctx": torch.randn(batch, 5, 32, generator=g), "tokens": torch.randn(1, 7, clip_dim, generator=g),
            "mask": (torch.rand(1, 64, 64, generator=g) > 0.5).float(), "cond": torch.randn(1, 5, 8, 8, generator=g)}


def test_sd15_cross_attention_names_map_to_comfyui_blocks():
    names = ([f"down_blocks.{b}.attentions.{i}.transformer_blocks.0.attn2" for b in range(3) for i in range(2)]
             + ["mid_block.attentions.0.transformer_blocks.0.attn2"]
             + [f"up_blocks.{b}.attentions.{i}.transformer_blocks.0.attn2" for b in (1, 2, 3) for i in range(3)])
    keys = [comfy_attn2_key(n, 2) for n in names]
    # the 16 blocks IP-Adapter patches on SD1.5 in ComfyUI
    assert keys == ([("input", i, 0) for i in (1, 2, 4, 5, 7, 8)] + [("middle", 0, 0)]
                    + [("output", i, 0) for i in range(3, 12)])
    assert skip_channels({"block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2}) == \
        [320] * 4 + [640] * 3 + [1280] * 5  # the 12 SD1.5 skips


def test_zero_init_reference_net_leaves_the_unet_unchanged(unets):
    unet, _ = unets
    net = ReferenceNet.from_unet(unet)
    i = _inputs()
    with torch.no_grad():
        down, mid = net(i["x"][:, :4], i["t"], i["ctx"], torch.cat([i["x"][:, 5:], i["x"][:, 4:5]], 1))
        assert len(down) == len(skip_channels(net.unet_config)) == 4
        assert all(float(r.abs().max()) == 0.0 for r in [*down, mid])
        plain = unet(i["x"], i["t"], i["ctx"]).sample
        patched = unet(i["x"], i["t"], i["ctx"], down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        assert torch.equal(plain, patched)
        # widened conv_in on [noisy, masked, mask] = the inpainting UNet's conv_in on [noisy, mask, masked]
        same = net.conv_in(torch.cat([i["x"][:, :4], i["x"][:, 5:], i["x"][:, 4:5]], 1))
        assert torch.allclose(same, unet.conv_in(i["x"]), atol=1e-5)


def test_output_block_patch_adds_residuals_where_diffusers_does(unets):
    unet, comfy_unet = unets
    g = torch.Generator().manual_seed(1)
    i = _inputs(1)
    channels, sizes = skip_channels(dict(unet.config)), [8, 8, 4, 4]
    down = [torch.randn(2, c, s, s, generator=g) * 0.3 for c, s in zip(channels, sizes)]
    mid = torch.randn(2, 64, 4, 4, generator=g) * 0.3
    options = {"patches": {"output_block_patch": [refnet_output_block_patch]}, CAEDIT_KEY: {"residuals": (down, mid)}}
    with torch.no_grad():
        want = unet(i["x"], i["t"], i["ctx"], down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        plain = comfy_unet(i["x"], timesteps=i["t"], context=i["ctx"], transformer_options={})
        got = comfy_unet(i["x"], timesteps=i["t"], context=i["ctx"], transformer_options=options)
    assert torch.allclose(plain, unet(i["x"], i["t"], i["ctx"]).sample, atol=1e-4)  # the two UNets agree
    assert (got - plain).abs().max() > 0.05
    assert torch.allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("placement", ["unet", "refnet"])
def test_ca2_through_comfyui_patches_equals_diffusers_processors(unets, placement):
    unet, comfy_unet = unets
    adapter = tiny_adapter(3, placement, refnet=True, clip_dim=1024, residual_scale=0.05, unet=unet)
    i = _inputs(2)
    cou = [0, 1]  # a cond chunk and an uncond chunk of one image each
    with torch.no_grad():  # diffusers reference, built by hand
        call = CA2Call(expand_to_batch(i["tokens"], 2, cou, uncond_zero=True), pooled_text_token(i["ctx"]),
                       expand_to_batch(i["mask"], 2, cou), (8, 8), strength=0.8)
        holder = CallHolder()
        layers = adapter.layers()
        if placement == "unet":
            set_ca2_processors(unet, layers, holder)
        holder.call = call
        cond = expand_to_batch(i["cond"], 2, cou)
        down, mid = adapter.refnet(i["x"][:, :4], i["t"], i["ctx"], cond, call if placement == "refnet" else None)
        want = unet(i["x"], i["t"], i["ctx"], down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        unet.set_attn_processor(AttnProcessor2_0())
        plain = unet(i["x"], i["t"], i["ctx"]).sample

        options = {"cond_or_uncond": cou, "patches": {"output_block_patch": [refnet_output_block_patch]},
                   "patches_replace": {"attn2": {comfy_attn2_key(n, 1): Attn2Patch(m) for n, m in layers.items()}
                                       if placement == "unet" else {}}}
        wrapper = CAEditUNetWrapper(i["tokens"], i["mask"], 0.8, True, adapter.refnet, i["cond"], 1.0, True,
                                    ca2_in_refnet=placement == "refnet")
        executor = lambda x, t, c, y, control, opts: comfy_unet(x, timesteps=t, context=c, transformer_options=opts)  # noqa: E731
        got = wrapper(executor, i["x"], i["t"], i["ctx"], None, None, options)
    assert (want - plain).abs().max() > 0.01
    assert torch.allclose(got, want, atol=2e-4), float((got - want).abs().max())


def test_batch_expansion_and_recorder_take_the_right_rows():
    per_image = torch.arange(2.0).reshape(2, 1)
    assert expand_to_batch(per_image, 4, [1, 0], uncond_zero=True).flatten().tolist() == [0, 0, 0, 1]
    assert expand_to_batch(per_image[:1], 4, [0, 1]).flatten().tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError):
        expand_to_batch(per_image, 3, [0, 1])
    rec = TextAttentionRecorder()
    rec.start()
    rec.add(torch.arange(4.0).reshape(4, 1, 1), [1, 0])
    rec.add(torch.ones(2, 1, 1), [1])  # an uncond-only call records nothing
    assert [m.flatten().tolist() for m in rec.stop()] == [[2.0, 3.0]]


def _sdpa(q, k, v, extra_options):
    b, n, inner = q.shape
    heads = extra_options["n_heads"]
    qh, kh, vh = (t.reshape(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v))
    return torch.nn.functional.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).reshape(b, n, inner)


def test_recording_patch_returns_the_inner_attention_unchanged_and_records_probabilities():
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 16, 32, generator=g) for _ in range(3))
    rec = TextAttentionRecorder()
    patch = Attn2Patch(None, rec, attention=_sdpa)
    extra = {"n_heads": 4, "cond_or_uncond": [0, 1]}
    silent = patch(q, k, v, extra)
    rec.start()
    loud = patch(q, k, v, extra)
    maps = rec.stop()
    assert torch.equal(silent, _sdpa(q, k, v, extra)) and torch.equal(loud, silent)
    assert len(maps) == 1 and maps[0].shape == (1, 16, 16) and torch.allclose(maps[0].sum(-1), torch.ones(1, 16))


def test_autograd_views_differentiate_an_inference_mode_model_without_copying_it():
    with torch.inference_mode():
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))
    originals = [p for p in model.parameters()]
    x = torch.randn(1, 3, 6, 6, requires_grad=True)
    with pytest.raises(RuntimeError, match="Inference tensors"):
        model(x).sum().backward()
    with autograd_views(model) as swapped:
        assert swapped == 4
        assert [p.data_ptr() for p in model.parameters()] == [p.data_ptr() for p in originals]  # same memory
        grad, = torch.autograd.grad(model(x).square().sum(), x)
    assert grad.abs().sum() > 0
    assert all(a is b for a, b in zip(model.parameters(), originals))  # originals restored
    assert all(p.is_inference() for p in model.parameters())


def test_masked_condition_layout():
    latent = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 64, 64)
    mask[:, :32] = 1
    cond = masked_condition(latent, mask)
    assert cond.shape == (1, 5, 8, 8) and torch.equal(cond[:, :4], latent)
    assert cond[0, 4, :4].eq(1).all() and cond[0, 4, 4:].eq(0).all()


def test_stfg_stepper_guides_an_inference_mode_model_inside_inference_mode():
    """What the STFG guider does in ComfyUI: weights and inputs are inference tensors, the step runs under
    torch.inference_mode(), the text-attention recorder feeds the boundary, and one step lowers g on it."""
    from caedit_core.stfg import stfg_loss

    g = torch.Generator().manual_seed(5)
    with torch.inference_mode():
        net = torch.nn.Conv2d(4, 4, 3, padding=1)
        torch.nn.init.normal_(net.weight, 0, 0.05)
        text = torch.randn(1, 3, 4, generator=g)
        source = torch.randn(1, 4, 16, 16, generator=g)
        x = torch.randn(1, 4, 16, 16, generator=g) * 2.0
        mask = torch.zeros(1, 128, 128)
        mask[:, 24:104, 24:104] = 1
    stepper = STFGStepper(mask, strength=10.0)
    patch = Attn2Patch(None, stepper.recorder, attention=_sdpa)

    def predict(z, t):  # k-diffusion denoiser around a conv eps-net, plus a cross-attention the recorder sees
        sigma = t.reshape(-1, 1, 1, 1)
        tokens, kv = z.flatten(2).transpose(1, 2), text.expand(z.shape[0], -1, -1).clone()  # ComfyUI: k = to_k(context)
        patch(tokens, kv, kv, {"n_heads": 1, "cond_or_uncond": [0]})
        return z - sigma * net(z / (1 + sigma ** 2).sqrt())

    with torch.inference_mode():
        sigma = torch.tensor([2.0])
        plain = predict(x, sigma)
        stepper.reset(source)
        guided = stepper(x, sigma, predict, net)
        assert not guided.requires_grad and stepper.views == 2 and stepper.maps  # 2 weights as views, maps recorded
        boundary = stepper.last_boundary
        assert 0 < boundary.sum() < 100 and float(stepper.last_loss) == pytest.approx(float(stfg_loss(plain, source, boundary)), rel=1e-5)
        assert stfg_loss(guided, source, boundary) < 0.7 * stfg_loss(plain, source, boundary)
        stepper.strength = 0.0
        assert torch.equal(stepper(x, sigma, predict, net), plain)
    assert net.weight.is_inference()  # the model itself untouched


def test_reference_net_from_a_comfyui_state_dict_equals_the_diffusers_copy(unets):
    unet, comfy_unet = unets
    a = ReferenceNet.from_unet(unet).state_dict()
    b = ReferenceNet.from_ldm_state_dict(comfy_unet.state_dict(), unet.config).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_reference_net_maps_are_recorded_for_stfg_when_asked(unets):
    """STFG's maps='refnet': the wrapper hands the recorder to the reference net, whose cross-attention layers
    record the cond rows; the main UNet's output is unchanged by recording."""
    unet, comfy_unet = unets
    adapter = tiny_adapter(3, "unet", refnet=True, clip_dim=1024, residual_scale=0.05, unet=unet)
    i = _inputs(6)
    options = {"cond_or_uncond": [0, 1], "patches": {"output_block_patch": [refnet_output_block_patch]}}
    wrapper = CAEditUNetWrapper(i["tokens"], i["mask"], 0.0, False, adapter.refnet, i["cond"], 1.0)
    executor = lambda x, t, c, y, control, opts: comfy_unet(x, timesteps=t, context=c, transformer_options=opts)  # noqa: E731
    with torch.no_grad():
        quiet = wrapper(executor, i["x"], i["t"], i["ctx"], None, None, options)
        wrapper.refnet_recorder = TextAttentionRecorder()
        wrapper.refnet_recorder.start()
        loud = wrapper(executor, i["x"], i["t"], i["ctx"], None, None, options)
        maps = wrapper.refnet_recorder.stop()
    assert torch.equal(quiet, loud)
    assert [tuple(m.shape) for m in maps] == [(1, 64, 5), (1, 16, 5), (1, 16, 5)]  # two down levels + middle
    assert all(torch.allclose(m.sum(-1), torch.ones_like(m[..., 0])) for m in maps)
