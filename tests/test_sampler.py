"""Schedule, packing, guidance modes and the Euler sampler, checked against hand formulas and the tiny DiT."""
from __future__ import annotations

import itertools
import math
import types

import pytest
import torch

from lato_core.sampler import (LandmarkAwareCFG, LandmarkCondition, LatentSizeError, NoGuidance, ReleaseCFG,
                               flow_schedule, grid_hw_for_latent, grid_hw_for_pixels, guided_velocity,
                               make_guidance, mu_for_tokens, pack_latents, sample, seeded_noise, unpack_latents)
from tests.tiny_dit import TINY, tiny_inputs, tiny_model

GRID = (4, 6)
ATOL = 2e-5


def hand_schedule(steps: int, tokens: int) -> list[float]:
    mu = 0.5 + (1.15 - 0.5) * (tokens - 256) / (4096 - 256)
    times = [1 - i / steps for i in range(steps + 1)]
    return [0.0 if t == 0 else math.exp(mu) / (math.exp(mu) + 1 / t - 1) for t in times]


@pytest.mark.parametrize("steps, tokens", [(4, 1024), (28, 1024), (10, 4096), (5, 256), (7, 2304)])
def test_schedule_equals_hand_formula(steps, tokens):
    times = flow_schedule(steps, tokens)
    assert times.dtype == torch.float32   # the release computes in float32: 1-2 ulp from the exact formula
    assert times.tolist() == pytest.approx(hand_schedule(steps, tokens), abs=3e-7)
    assert times[0] == 1.0 and times[-1] == 0.0
    assert bool((times[1:] < times[:-1]).all())


def test_schedule_numbers_and_overrides():
    assert mu_for_tokens(256) == pytest.approx(0.5)
    assert mu_for_tokens(1024) == pytest.approx(0.63)      # 512 x 512
    assert mu_for_tokens(4096) == pytest.approx(1.15)
    # midpoint at 1024 tokens: e^mu / (e^mu + 1) = sigmoid(0.63)
    assert flow_schedule(2, 1024)[1].item() == pytest.approx(0.652489, abs=1e-6)
    t = torch.linspace(1, 0, 5, dtype=torch.float64)
    s = 3.0
    assert flow_schedule(4, 1024, shift=s).tolist() == pytest.approx((s * t / (1 + (s - 1) * t)).tolist())
    assert flow_schedule(4, 1024, shift=1.0).tolist() == pytest.approx(t.tolist())
    assert flow_schedule(4, 99, mu=0.63).tolist() == pytest.approx(flow_schedule(4, 1024).tolist())
    with pytest.raises(ValueError):
        flow_schedule(4, 1024, shift=2.0, mu=0.5)


def test_packing_round_trip_exact():
    latent = torch.randn(2, 16, 6, 8)
    packed = pack_latents(latent)
    assert packed.shape == (2, 12, 64)
    assert torch.equal(unpack_latents(packed, grid_hw_for_latent(latent)), latent)


def test_packing_order_matches_hand_indexing():
    latent = torch.arange(1 * 3 * 4 * 6, dtype=torch.float32).reshape(1, 3, 4, 6)
    rows, cols = 2, 3
    reference = torch.empty(1, rows * cols, 3 * 4)
    for r, c, ch, dy, dx in itertools.product(range(rows), range(cols), range(3), range(2), range(2)):
        reference[0, r * cols + c, ch * 4 + dy * 2 + dx] = latent[0, ch, 2 * r + dy, 2 * c + dx]
    assert torch.equal(pack_latents(latent), reference)


def test_grid_sizes_and_errors():
    assert grid_hw_for_pixels(512, 512) == (32, 32)
    assert grid_hw_for_pixels(512, 768) == (32, 48)
    with pytest.raises(LatentSizeError, match="multiple of 16"):
        grid_hw_for_pixels(500, 512)
    with pytest.raises(LatentSizeError, match="multiple of 16"):
        pack_latents(torch.zeros(1, 16, 5, 8))


# ---- guidance ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    inputs = tiny_inputs(GRID, num_landmarks=5)
    gen = torch.Generator().manual_seed(5)
    uncond = (torch.randn(1, 8, TINY.context_in_dim, generator=gen), torch.randn(1, TINY.vec_in_dim, generator=gen))
    text = {"cond": (inputs["txt"], inputs["y"]), "uncond": uncond}
    marks = LandmarkCondition(inputs["landmark_tokens"], inputs["landmark_xy"])
    null = torch.randn(TINY.landmark_dim, generator=gen)
    return model, inputs, text, marks, null


def direct(model, inputs, text_pair, t=0.7, tokens="same", xy=None):
    """One plain forward pass, no guidance code involved."""
    tokens = inputs["landmark_tokens"] if isinstance(tokens, str) else tokens
    xy = inputs["landmark_xy"] if xy is None else xy
    extra = {} if tokens is None else dict(landmark_tokens=tokens, landmark_xy=xy)
    return model(inputs["img_noisy"], inputs["img_source"], torch.tensor([t]), *text_pair, grid_hw=GRID,
                 **extra).float()


def guided(model, guidance, inputs, text, marks, t=0.7, calls=None):
    hook = None
    if calls is not None:
        hook = model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    try:
        return guided_velocity(model, guidance, inputs["img_noisy"], inputs["img_source"], t, text, marks, GRID)
    finally:
        if hook is not None:
            hook.remove()


def test_release_cfg_is_one_batched_forward_equal_to_two_passes(setup):
    model, inputs, text, marks, _ = setup
    calls = []
    v = guided(model, ReleaseCFG(4.0), inputs, text, marks, calls=calls)
    assert calls == [2]
    v_c, v_u = direct(model, inputs, text["cond"]), direct(model, inputs, text["uncond"])
    torch.testing.assert_close(v, v_u + 4.0 * (v_c - v_u), atol=ATOL, rtol=0)


def test_scale_one_and_none_mode_are_the_conditional_pass(setup):
    model, inputs, text, marks, _ = setup
    v_c = direct(model, inputs, text["cond"])
    for guidance in (ReleaseCFG(1.0), NoGuidance(), make_guidance("none")):
        calls = []
        torch.testing.assert_close(guided(model, guidance, inputs, text, marks, calls=calls), v_c, atol=ATOL, rtol=0)
        assert calls == [1]


def test_landmark_aware_with_learned_null_tokens(setup):
    model, inputs, text, marks, null = setup
    calls = []
    v = guided(model, LandmarkAwareCFG(5.0, 2.0, null), inputs, text, marks, calls=calls)
    assert calls == [3]
    v_c, v_u = direct(model, inputs, text["cond"]), direct(model, inputs, text["uncond"])
    v_uu = direct(model, inputs, text["uncond"], tokens=null.expand_as(inputs["landmark_tokens"]))
    torch.testing.assert_close(v, v_uu + 2.0 * (v_u - v_uu) + 5.0 * (v_c - v_u), atol=ATOL, rtol=0)


def test_landmark_aware_without_null_tokens_leaves_landmarks_out(setup):
    model, inputs, text, marks, _ = setup
    calls = []
    v = guided(model, LandmarkAwareCFG(5.0, 2.0), inputs, text, marks, calls=calls)
    assert calls == [3]   # still one batched forward: the null branch marks its landmarks invisible
    v_c, v_u = direct(model, inputs, text["cond"]), direct(model, inputs, text["uncond"])
    v_uu = direct(model, inputs, text["uncond"], tokens=None)
    assert (v_uu - v_u).abs().max() > 1e-3   # the geometry branch differs, so the test can see it
    torch.testing.assert_close(v, v_uu + 2.0 * (v_u - v_uu) + 5.0 * (v_c - v_u), atol=ATOL, rtol=0)


def test_landmark_aware_reduces_to_release(setup):
    model, inputs, text, marks, null = setup
    release = guided(model, ReleaseCFG(5.0), inputs, text, marks)
    for null_tokens in (None, null):
        calls = []
        v = guided(model, LandmarkAwareCFG(5.0, 1.0, null_tokens), inputs, text, marks, calls=calls)
        torch.testing.assert_close(v, release, atol=ATOL, rtol=0)
        assert calls == [2]
    same_as_cond = inputs["landmark_tokens"][0]   # null geometry identical to the conditional tokens
    v = guided(model, LandmarkAwareCFG(5.0, 3.0, same_as_cond), inputs, text, marks)
    torch.testing.assert_close(v, release, atol=1e-4, rtol=0)


def test_landmark_aware_equal_scales_is_joint_cfg(setup):
    model, inputs, text, marks, null = setup
    calls = []
    v = guided(model, LandmarkAwareCFG(4.0, 4.0, null), inputs, text, marks, calls=calls)
    assert calls == [2]
    v_c = direct(model, inputs, text["cond"])
    v_uu = direct(model, inputs, text["uncond"], tokens=null.expand_as(inputs["landmark_tokens"]))
    torch.testing.assert_close(v, v_uu + 4.0 * (v_c - v_uu), atol=ATOL, rtol=0)


def test_missing_landmarks_are_dropped(setup):
    model, inputs, text, _, _ = setup
    visible = torch.tensor([[True, False, True, True, False]])
    marks = LandmarkCondition(inputs["landmark_tokens"], inputs["landmark_xy"], visible)
    v = guided(model, ReleaseCFG(4.0), inputs, text, marks)
    keep = visible[0]
    tokens, xy = inputs["landmark_tokens"][:, keep], inputs["landmark_xy"][:, keep]
    v_c = direct(model, inputs, text["cond"], tokens=tokens, xy=xy)
    v_u = direct(model, inputs, text["uncond"], tokens=tokens, xy=xy)
    torch.testing.assert_close(v, v_u + 4.0 * (v_c - v_u), atol=ATOL, rtol=0)


def test_text_of_different_lengths_runs_branches_separately(setup):
    model, inputs, text, marks, _ = setup
    short = (text["uncond"][0][:, :5], text["uncond"][1])
    calls = []
    v = guided(model, ReleaseCFG(3.0), inputs, {"cond": text["cond"], "uncond": short}, marks, calls=calls)
    assert calls == [1, 1]
    v_c, v_u = direct(model, inputs, text["cond"]), direct(model, inputs, short)
    torch.testing.assert_close(v, v_u + 3.0 * (v_c - v_u), atol=ATOL, rtol=0)


def test_guidance_errors(setup):
    model, inputs, text, marks, _ = setup
    with pytest.raises(ValueError, match="unknown guidance"):
        make_guidance("cfg++")
    with pytest.raises(ValueError, match="unconditional"):
        guided(model, ReleaseCFG(4.0), inputs, {"cond": text["cond"]}, marks)


# ---- Euler sampler -----------------------------------------------------------------------------------------

def run(model, setup, seed=0, steps=4, **kwargs):
    _, inputs, text, marks, _ = setup
    return sample(model, seed, inputs["img_source"], text["cond"], text["uncond"], marks, grid_hw=GRID,
                  steps=steps, **kwargs)


def test_sampling_is_deterministic_per_seed(setup):
    model = setup[0]
    first, again, other = run(model, setup, seed=7), run(model, setup, seed=7), run(model, setup, seed=8)
    assert first.dtype == torch.float32 and first.shape == (1, 24, 64)
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-2


def test_seeded_noise_is_cpu_randn_of_the_unpacked_latent():
    expected = torch.randn(2, 16, 8, 12, generator=torch.Generator().manual_seed(3))
    assert torch.equal(seeded_noise(3, 2, GRID), pack_latents(expected))


def test_callback_and_interrupt(setup):
    model = setup[0]
    seen = []
    run(model, setup, steps=5, callback=lambda step, total, x: seen.append((step, total, tuple(x.shape))))
    assert seen == [(i, 5, (1, 24, 64)) for i in range(5)]

    class Stop(Exception):
        pass

    checks, done = [], []

    def interrupt():
        checks.append(1)
        if len(checks) == 3:
            raise Stop

    with pytest.raises(Stop):
        run(model, setup, steps=5, interrupt=interrupt, callback=lambda step, total, x: done.append(step))
    assert done == [0, 1]


class ConstantVelocity:
    """Fake DiT: the same velocity for every input; records the timesteps it was called with."""
    dtype = torch.float32

    def __init__(self, v):
        self.v, self.times = v, []

    def __call__(self, img_noisy, img_source, timesteps, txt, y, **kwargs):
        self.times.append(timesteps.tolist())
        return self.v.expand(img_noisy.shape[0], *self.v.shape[1:])


def test_euler_with_constant_velocity_lands_on_x1_minus_v():
    gen = torch.Generator().manual_seed(0)
    x1, v = torch.randn(1, 24, 64, generator=gen), torch.randn(1, 24, 64, generator=gen)
    model = ConstantVelocity(v)
    text = (torch.zeros(1, 8, 32), torch.zeros(1, 16))
    seen_t = []
    text_fn = lambda t: (seen_t.append(t.item()), text)[1]   # noqa: E731 (connector-like callable of t)
    out = sample(model, x1, None, text_fn, text, grid_hw=GRID, steps=6, guidance=ReleaseCFG(4.0))
    torch.testing.assert_close(out, x1 - v, atol=1e-6, rtol=0)
    schedule = flow_schedule(6, 24)[:-1].float()
    assert [t[0] for t in model.times] == schedule.tolist() and all(len(t) == 2 for t in model.times)
    assert seen_t == pytest.approx(schedule.tolist())

    seen_t.clear()   # an object shaped like lato_core.text.TextConditioning: .tokens(t) and .pooled
    conditioning = types.SimpleNamespace(pooled=text[1], tokens=lambda t: (seen_t.append(float(t)), text[0])[1])
    out = sample(ConstantVelocity(v), x1, None, conditioning, text, grid_hw=GRID, steps=6)
    torch.testing.assert_close(out, x1 - v, atol=1e-6, rtol=0)
    assert seen_t == pytest.approx(schedule.tolist())


def test_bf16_model_is_close_to_fp32(setup):
    model_bf16 = tiny_model().to(torch.bfloat16)
    fp32 = run(setup[0], setup, seed=1)
    bf16 = run(model_bf16, setup, seed=1)
    assert bf16.dtype == torch.float32
    relative = (bf16 - fp32).norm() / fp32.norm()
    assert relative < 0.03, relative
