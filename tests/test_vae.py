"""FLUX VAE wrapper: BFL-key file -> diffusers AutoencoderKL via diffusers' converter, normalisation, errors."""
from __future__ import annotations

import re

import pytest
import torch

from lato_core.errors import ModelFileError
from safetensors.torch import save_file

from lato_core.vae import FLUX_AUTOENCODER_CONFIG, FluxVAE, autoencoder_from_bfl_state, load_flux_vae

SCALE, SHIFT = 0.3611, 0.1159
TINY_VAE_CONFIG = dict(FLUX_AUTOENCODER_CONFIG, block_out_channels=(32, 32), layers_per_block=1,
                       down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
# (diffusers key pattern, BFL replacement); n = number of up blocks (diffusers counts them in reverse)
DIFFUSERS_TO_BFL = (
    (r"\.conv_norm_out\.", lambda m, n: ".norm_out."),
    (r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", lambda m, n: f"encoder.down.{m[1]}.block.{m[2]}."),
    (r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", lambda m, n: f"encoder.down.{m[1]}.downsample."),
    (r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.", lambda m, n: f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}."),
    (r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m, n: f"decoder.up.{n - 1 - int(m[1])}.upsample."),
    (r"\.mid_block\.resnets\.(\d+)\.", lambda m, n: f".mid.block_{int(m[1]) + 1}."),
    (r"\.mid_block\.attentions\.0\.group_norm\.", lambda m, n: ".mid.attn_1.norm."),
    (r"\.mid_block\.attentions\.0\.to_([qkv])\.", lambda m, n: f".mid.attn_1.{m[1]}."),
    (r"\.mid_block\.attentions\.0\.to_out\.0\.", lambda m, n: ".mid.attn_1.proj_out."),
    (r"\.conv_shortcut\.", lambda m, n: ".nin_shortcut."),
)


def diffusers_to_bfl(state: dict[str, torch.Tensor], num_up_blocks: int) -> dict[str, torch.Tensor]:
    """Inverse of diffusers' convert_ldm_vae_checkpoint; attention linears become 1x1 convs as in BFL files."""
    out = {}
    for key, value in state.items():
        for pattern, replace in DIFFUSERS_TO_BFL:
            key = re.sub(pattern, lambda m: replace(m, num_up_blocks), key)
        if ".attn_1." in key and key.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[key] = value.clone()
    return out


def tiny_autoencoder(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    model = AutoencoderKL(**TINY_VAE_CONFIG)
    with torch.no_grad():   # perturb every weight (norms included) so swapped keys would show
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


@pytest.fixture(scope="module")
def reference():
    return tiny_autoencoder()


@pytest.fixture(scope="module")
def bfl_state(reference):
    return diffusers_to_bfl(reference.state_dict(), len(TINY_VAE_CONFIG["up_block_types"]))


@pytest.fixture()
def vae_file(tmp_path, bfl_state):
    path = tmp_path / "vae.safetensors"
    save_file(bfl_state, str(path))
    return path


def test_bfl_keys_look_like_the_release(bfl_state):
    assert bfl_state["encoder.mid.attn_1.q.weight"].shape == (32, 32, 1, 1)
    for key in ("encoder.down.0.block.0.conv1.weight", "encoder.down.0.downsample.conv.weight",
                "decoder.up.1.upsample.conv.weight", "decoder.up.0.block.0.conv2.bias",
                "decoder.mid.block_2.norm1.weight", "decoder.norm_out.weight", "encoder.conv_out.weight"):
        assert key in bfl_state, key
    assert not any("down_blocks" in k or "up_blocks" in k or "mid_block" in k for k in bfl_state)


def test_loaded_weights_equal_the_diffusers_model(vae_file, reference):
    vae = load_flux_vae(vae_file, config=TINY_VAE_CONFIG)
    loaded = vae.autoencoder.state_dict()
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_encode_decode_match_diffusers_with_scale_and_shift(vae_file, reference):
    vae = load_flux_vae(vae_file, config=TINY_VAE_CONFIG)
    pixels = torch.rand(2, 16, 24, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean = reference.encode(pixels.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean
    latent = vae.encode(pixels)
    assert latent.shape == (2, 16, 8, 12)
    torch.testing.assert_close(latent, (mean - 0.1159) * 0.3611, atol=1e-6, rtol=0)
    # by hand on one element: (z - shift) * scale
    assert latent[0, 0, 0, 0].item() == pytest.approx((mean[0, 0, 0, 0].item() - 0.1159) * 0.3611, abs=1e-6)

    with torch.no_grad():
        image = reference.decode(latent / 0.3611 + 0.1159).sample
    expected = ((image + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    decoded = vae.decode(latent)
    assert decoded.shape == (2, 16, 24, 3)
    torch.testing.assert_close(decoded, expected, atol=1e-6, rtol=0)


def test_posterior_sampling_option(vae_file):
    vae = load_flux_vae(vae_file, config=TINY_VAE_CONFIG)
    pixels = torch.rand(1, 16, 16, 3)
    one = vae.encode(pixels, sample=True, generator=torch.Generator().manual_seed(1))
    two = vae.encode(pixels, sample=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(one, two)
    assert (one - vae.encode(pixels)).abs().max() > 1e-4


def test_wrong_architecture_names_the_file(vae_file):
    with pytest.raises(ModelFileError) as error:
        load_flux_vae(vae_file)   # tiny weights against the full FLUX config
    assert str(vae_file) in str(error.value) and "wrong shape" in str(error.value)


def test_missing_and_unknown_keys_name_the_file(tmp_path, bfl_state):
    broken = dict(bfl_state)
    del broken["decoder.up.0.block.0.conv1.weight"]
    path = tmp_path / "broken_vae.safetensors"
    save_file(broken, str(path))
    with pytest.raises(match="broken_vae.safetensors") as error:
        load_flux_vae(path, config=TINY_VAE_CONFIG)
    assert "decoder.up_blocks.1.resnets.0.conv1.weight" in str(error.value) and "missing" in str(error.value)

    extra = dict(bfl_state, **{"encoder.extra.weight": torch.zeros(1)})
    with pytest.raises(match="not recognised"):
        autoencoder_from_bfl_state(extra, TINY_VAE_CONFIG, source="extra.safetensors")


def test_not_a_vae_file(tmp_path):
    path = tmp_path / "lato.safetensors"
    save_file({"img_in.weight": torch.zeros(4, 4)}, str(path))
    with pytest.raises(match="lato.safetensors has no encoder"):
        load_flux_vae(path)
    with pytest.raises(match="not found"):
        load_flux_vae(tmp_path / "absent.safetensors")


def test_flux_config_matches_flux_ae_shapes():
    """The default config, converted from BFL keys, gives the FLUX.1 autoencoder's known shapes (meta tensors)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    with torch.device("meta"):
        model = AutoencoderKL(**FLUX_AUTOENCODER_CONFIG)
    expected = model.state_dict()
    bfl = diffusers_to_bfl(expected, 4)
    assert bfl["encoder.conv_in.weight"].shape == (128, 3, 3, 3)
    assert bfl["encoder.conv_out.weight"].shape == (32, 512, 3, 3)     # 2 x 16 latent channels, no quant_conv
    assert bfl["decoder.conv_in.weight"].shape == (512, 16, 3, 3)
    assert bfl["decoder.up.0.block.0.nin_shortcut.weight"].shape == (128, 256, 1, 1)
    assert bfl["encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert not any(k.startswith(("quant_conv", "post_quant_conv")) for k in bfl)
    converted = convert_ldm_vae_checkpoint(bfl, FLUX_AUTOENCODER_CONFIG)
    assert set(converted) == set(expected)
    assert all(converted[k].shape == expected[k].shape for k in expected)
