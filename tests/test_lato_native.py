"""LaTo as a native ComfyUI model, in this process: the release's numbers through core's own sampling nodes
(SamplerCustomAdvanced with CFGGuider and euler; KSampler's path with ModelSamplingFlux) and core's LoRA loader,
from the files a user installs."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tests.release_fixtures import NOISY, install_dit
from tests.test_release_parity import inputs, outputs  # noqa: F401  (the release's fixtures, as pytest fixtures)
from tests.tiny_sd15 import import_comfy, pack_node_module

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def comfy():
    return import_comfy()


@pytest.fixture(scope="module")
def native(comfy):
    return pack_node_module("lato_native_model")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    return install_dit(models), install_dit(models, with_landmark_in=False)


def conditioning(native, inputs, row):
    fmt = native.comfy.latent_formats.Flux()
    raw_source = inputs["source_latent"] / fmt.scale_factor + fmt.shift_factor   # what VAEEncode would return
    landmarks = native.LandmarkCond(inputs["landmark_latents"][row:row + 1].transpose(1, 2),
                                    inputs["landmark_coordinates"][row:row + 1], torch.ones(1, 68), (512, 512))
    return [[inputs["llm_embedding"][row:row + 1], {"attention_mask": inputs["mask"][row:row + 1],
                                                     "reference_latents": [raw_source], native.LANDMARK_KEY: landmarks}]]


def release_schedule_node(native, inputs):
    (sigmas,) = pack_node_module("lato_schedule").FaceEditLaToReleaseSchedule().get_sigmas({"samples": inputs["noise_latent"]}, 28)
    return sigmas


class ReleaseNoise:
    """A NOISE input for SamplerCustomAdvanced that hands over the release's own starting noise."""
    seed = 0

    def __init__(self, noise):
        self.noise = noise

    def generate_noise(self, latent):
        return self.noise


def sample(comfy, patcher, native, inputs):
    """The user's SamplerCustomAdvanced graph, node by node: CFGGuider (cfg 4), KSamplerSelect (euler), the LaTo
    Release Schedule, the source latent as latent_image."""
    from comfy_extras.nodes_custom_sampler import CFGGuider, KSamplerSelect, SamplerCustomAdvanced

    from lato_core.sampler.schedule import flow_schedule
    (guider,) = CFGGuider.execute(patcher, conditioning(native, inputs, 0), conditioning(native, inputs, 1), 4.0).result
    (sampler,) = KSamplerSelect.execute("euler").result
    sigmas = release_schedule_node(native, inputs)
    torch.testing.assert_close(sigmas, flow_schedule(28, NOISY), rtol=0, atol=0)
    latent = {"samples": torch.zeros_like(inputs["noise_latent"])}
    out, _ = SamplerCustomAdvanced.execute(ReleaseNoise(inputs["noise_latent"]), guider, sampler, sigmas, latent).result
    fmt = native.comfy.latent_formats.Flux()
    return (out["samples"] - fmt.shift_factor) * fmt.scale_factor   # back to the release's normalised latent


def test_schedule_of_the_model_is_the_release_one(native, files):
    patcher = native.load_lato_patcher(str(files[0]["dit"]))
    sampling = patcher.get_model_object("model_sampling")
    from lato_core.sampler.schedule import flow_schedule, time_shift
    t = torch.linspace(1, 0, 29)[:-1]
    # ModelSamplingFlux's sigma(t) is the release's shift at 512 x 512 (mu 0.63)
    torch.testing.assert_close(sampling.sigma(t).float(), time_shift(t, native.RELEASE_SHIFT), rtol=0, atol=1e-6)
    assert flow_schedule(28, 1024)[1] == pytest.approx(float(sampling.sigma(torch.tensor(27 / 28))), abs=1e-6)


@pytest.mark.parametrize("layout", [0, 1], ids=["adapter_inside", "landmark_in.pth"])
def test_core_sampler_custom_advanced_with_euler_reproduces_the_28_step_sample(comfy, native, files, inputs, outputs,
                                                                               layout):
    paths = files[layout]
    patcher = native.load_lato_patcher(str(paths["dit"]), None if layout == 0 else str(paths["adapter"]))
    velocities = []

    def record(apply_model, args):
        denoised = apply_model(args["input"], args["timestep"], **args["c"])
        sigma = args["timestep"].reshape(-1, 1, 1, 1)
        order = args["cond_or_uncond"]   # 0 = positive, 1 = negative, in the batch's order
        v = ((args["input"] - denoised) / sigma).chunk(len(order))
        velocities.append(torch.cat([v[order.index(0)], v[order.index(1)]]))
        return denoised

    patcher = patcher.clone()
    patcher.set_model_unet_function_wrapper(record)
    with torch.no_grad():
        result = sample(comfy, patcher, native, inputs)
    torch.testing.assert_close(result, outputs["sampler_full28_unpacked"], rtol=0, atol=1e-3)
    from lato_core.sampler.packing import pack_latents
    raw = outputs["sampler_full28_raw_preds"][:, :, :NOISY]
    assert len(velocities) == 28
    torch.testing.assert_close(torch.stack([pack_latents(v) for v in velocities]), raw, rtol=0, atol=1e-3)


def test_core_lora_loader_merges_up_down_alpha_over_rank_and_skips_what_the_release_skips(comfy, native, files,
                                                                                           tmp_path):
    import comfy.sd
    import comfy.utils

    patcher = native.load_lato_patcher(str(files[0]["dit"]))
    gen = torch.Generator().manual_seed(4)
    lora = {}
    targets = {"double_blocks_0_img_attn_qkv": (192, 64, 4), "landmark_in": (64, 64, 64),   # full rank
               "single_blocks_1_linear2": (64, 320, 2), "final_layer_linear": (64, 64, 2),
               "connector_S_input_embedder": (32, 48, 2)}
    for name, (out_f, in_f, rank) in targets.items():
        lora[f"lora_unet_{name}.lora_down.weight"] = torch.randn(rank, in_f, generator=gen) * 0.1
        lora[f"lora_unet_{name}.lora_up.weight"] = torch.randn(out_f, rank, generator=gen) * 0.1
        lora[f"lora_unet_{name}.alpha"] = torch.tensor(float(rank) / 2)
    path = tmp_path / "lato_lora.safetensors"
    save_file(lora, str(path))
    patched, _ = comfy.sd.load_lora_for_models(patcher, None, comfy.utils.load_torch_file(str(path)), 0.8, 0)
    before = {k: v.clone() for k, v in patcher.model.diffusion_model.state_dict().items()}
    patched.patch_model()
    try:
        after = patched.model.diffusion_model.state_dict()
        for name, (_, _, rank) in targets.items():
            path_key = {"final_layer_linear": "final_layer.linear", "landmark_in": "landmark_in",
                        "connector_S_input_embedder": "connector.S.input_embedder",
                        "double_blocks_0_img_attn_qkv": "double_blocks.0.img_attn.qkv",
                        "single_blocks_1_linear2": "single_blocks.1.linear2"}[name] + ".weight"
            up, down = lora[f"lora_unet_{name}.lora_up.weight"], lora[f"lora_unet_{name}.lora_down.weight"]
            expected = before[path_key]
            if not name.startswith(("final_layer", "connector")):
                expected = expected + 0.8 * (rank / 2) / rank * (up @ down)
            torch.testing.assert_close(after[path_key], expected, rtol=0, atol=1e-6)
    finally:
        patched.unpatch_model()


def test_core_ksampler_path_euler_simple_reproduces_the_sample(comfy, native, files, inputs, outputs):
    """What the KSampler node runs (comfy.sample.sample): euler with core's "simple" scheduler, the schedule set for
    the picture's size by core's ModelSamplingFlux node (the release's rule: mu linear in the token count; the
    model's own default is a 512 x 512 crop). Simple's sigmas differ from the release's exact grid by at most
    1.5e-4 (10000 discrete timesteps), which moves the 28-step sample by 6e-3 here: within 1e-2. The exact
    grid is the LaTo Release Schedule node's, for SamplerCustomAdvanced (1e-3 above)."""
    import comfy.sample
    from comfy_extras.nodes_model_advanced import ModelSamplingFlux

    patcher = native.load_lato_patcher(str(files[0]["dit"]))
    (patcher,) = ModelSamplingFlux().patch(patcher, max_shift=1.15, base_shift=0.5, width=64, height=64)
    latent = torch.zeros_like(inputs["noise_latent"])
    with torch.no_grad():
        out = comfy.sample.sample(patcher, inputs["noise_latent"], 28, 4.0, "euler", "simple",
                                  conditioning(native, inputs, 0), conditioning(native, inputs, 1), latent, seed=0)
    fmt = native.comfy.latent_formats.Flux()
    torch.testing.assert_close((out - fmt.shift_factor) * fmt.scale_factor, outputs["sampler_full28_unpacked"],
                               rtol=0, atol=1e-2)


def test_landmark_aware_guider_runs_its_three_branches_in_one_forward(comfy, native, files, inputs):
    """v = v_uu + w_g (v_u - v_uu) + w_t (v_c - v_u); geometry 1 is the release's CFG; one batched call per step."""
    import comfy.samplers

    patcher = native.load_lato_patcher(str(files[0]["dit"]))
    calls = []

    def record(apply_model, args):
        calls.append(len(args["cond_or_uncond"]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    patcher = patcher.clone()
    patcher.set_model_unet_function_wrapper(record)
    pos, neg = conditioning(native, inputs, 0), conditioning(native, inputs, 1)
    null = [[t, {**o, native.LANDMARK_KEY: o[native.LANDMARK_KEY].without_landmarks()}] for t, o in neg]

    def one_step(guider):   # euler from sigma 0.7 to 0 returns the guider's denoised prediction itself
        with torch.no_grad():
            return guider.sample(inputs["noise_latent"], torch.zeros_like(inputs["noise_latent"]),
                                 comfy.samplers.sampler_object("euler"), torch.tensor([0.7, 0.0]), seed=0)

    def branch(conds):
        guider = comfy.samplers.CFGGuider(patcher)
        guider.set_conds(conds, conds)
        guider.set_cfg(1.0)   # one pass: that branch's prediction
        return one_step(guider)

    calls.clear()
    guided = one_step(native.LandmarkAwareGuider(patcher, pos, neg, 3.0, 2.0))
    assert calls == [3]   # positive, negative and the landmark-free negative in one forward
    c, u, uu = branch(pos), branch(neg), branch(null)
    torch.testing.assert_close(guided, uu + 2.0 * (u - uu) + 3.0 * (c - u), rtol=0, atol=1e-4)
    assert (u - uu).abs().max() > 1e-3   # the landmarks matter: the third branch is not the second
    calls.clear()
    release = one_step(native.LandmarkAwareGuider(patcher, pos, neg, 4.0, 1.0))
    torch.testing.assert_close(release, u + 4.0 * (c - u), rtol=0, atol=1e-4)
    single = one_step(native.LandmarkAwareGuider(patcher, pos, neg, 4.0, 4.0))
    torch.testing.assert_close(single, uu + 4.0 * (c - uu), rtol=0, atol=1e-4)
    assert calls == [2, 2]   # the release's pair, then the paper's single scale (c, uu): no third branch


def test_learned_null_tokens_are_the_guiders_unconditional_geometry(native, tmp_path):
    from safetensors.torch import load_file

    from tests import tiny_lato
    path = tiny_lato.write_dit(tmp_path / "lato_null.safetensors", null_tokens=True)
    patcher = native.load_lato_patcher(str(path))
    learned = patcher.model.diffusion_model.landmark_null_tokens
    torch.testing.assert_close(learned.float(), load_file(str(path))["landmark_null_tokens"], rtol=0, atol=0)
    tokens = torch.randn(1, 68, tiny_lato.DIT.landmark_dim)
    landmarks = native.LandmarkCond(tokens, torch.rand(1, 68, 2) * 64, torch.ones(1, 68), (64, 64))
    neg = [[torch.zeros(1, 8, tiny_lato.CONNECTOR.in_dim), {native.LANDMARK_KEY: landmarks}]]
    guider = native.LandmarkAwareGuider(patcher, neg, neg, 3.0, 2.0)
    null = guider.original_conds["null"][0][native.LANDMARK_KEY]
    assert torch.equal(null.tokens, learned.float().expand(1, 68, -1)) and null.visible.all()
    plain = native.LandmarkAwareGuider(native.load_lato_patcher(str(files_without_null(tmp_path))), neg, neg, 3.0, 2.0)
    assert not plain.original_conds["null"][0][native.LANDMARK_KEY].visible.any()   # no learned tokens: left out


def files_without_null(tmp_path):
    from tests import tiny_lato
    return tiny_lato.write_dit(tmp_path / "lato_plain.safetensors")


@pytest.mark.parametrize("weight_dtype, bound", [("fp8_e4m3fn", 0.08), ("fp8_e5m2", 0.15)])
def test_fp8_storage_samples_within_fp8_rounding(comfy, native, files, inputs, outputs, weight_dtype, bound):
    """fp8 weight dtypes keep the Linear weights (DiT and connector) in fp8 and compute in the manual-cast dtype.
    One rounding moves a weight by up to 2^-3 (e4m3) or 2^-2 (e5m2); the 28-step sample measured 3.4% and 6.8%
    of the reference's RMS; allowed about twice that. Activations cast to fp8 by mistake fail outright."""
    patcher = native.load_lato_patcher(str(files[0]["dit"]), weight_dtype=weight_dtype)
    model = patcher.model.diffusion_model
    stored = native.WEIGHT_DTYPES[weight_dtype]
    assert model.double_blocks[0].img_attn.qkv.weight.dtype == stored
    assert model.connector.S.input_embedder.weight.dtype == stored
    assert model.double_blocks[0].img_attn.norm.query_norm.scale.dtype not in (torch.float8_e4m3fn, torch.float8_e5m2)
    with torch.no_grad():
        result = sample(comfy, patcher, native, inputs)
    ref = outputs["sampler_full28_unpacked"]
    error = (result - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()
    assert 1e-4 < error < bound, float(error)


def test_hidden_states_of_another_width_are_refused_before_sampling(native, files):
    from lato_core.errors import FaceEditError

    patcher = native.load_lato_patcher(str(files[0]["dit"]))
    width = patcher.model.diffusion_model.connector.config.in_dim
    assert "c_crossattn" in patcher.model.extra_conds(cross_attn=torch.zeros(1, 8, width))
    with pytest.raises(FaceEditError, match=f"reads {width}-wide .* 768 wide: encode with LaTo Text Encode"):
        patcher.model.extra_conds(cross_attn=torch.zeros(1, 77, 768))   # an SD1.5 CLIP's conditioning
