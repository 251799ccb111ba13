"""ComfyUI core's Qwen2.5-VL text path (what CLIPLoader type qwen_image runs) against transformers', on the same
tiny weights: the language model alone, then the whole encode of a Step1X-Edit prompt with its source crop (core's
CLIP wrapper, real Qwen2.5 tokenizer, image preprocessing, vision tower, M-RoPE positions) against the pack's
transformers path, in fp32. Core's Qwen25_7BVLI builds its parts at 7B sizes; the tiny one builds the same parts
small and keeps every other method of core's."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.tiny_qwen import build_tiny_qwen_bundle
from tests.tiny_sd15 import import_comfy, pack_node_module

pytestmark = pytest.mark.comfy


def core_language_model(hf_config, state: dict[str, torch.Tensor]):
    import comfy.ops
    from comfy.text_encoders.llama import Llama2_, Qwen25_7BVLI_Config

    text = hf_config.text_config
    config = Qwen25_7BVLI_Config(vocab_size=text.vocab_size, hidden_size=text.hidden_size,
                                 intermediate_size=text.intermediate_size, num_hidden_layers=text.num_hidden_layers,
                                 num_attention_heads=text.num_attention_heads,
                                 num_key_value_heads=text.num_key_value_heads, rms_norm_eps=text.rms_norm_eps,
                                 rope_theta=text.rope_parameters["rope_theta"])
    config.head_dim = text.hidden_size // text.num_attention_heads   # class-level 7B defaults, set per instance
    config.rope_dims = list(text.rope_parameters["mrope_section"])
    model = Llama2_(config, device="cpu", dtype=torch.float32, ops=comfy.ops.disable_weight_init)
    prefix = next(p for p in ("model.language_model.", "model.") if any(k.startswith(p + "layers.") for k in state))
    mine = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and "visual" not in k}
    missing, unexpected = model.load_state_dict(mine, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return model.eval()


def test_core_language_model_matches_transformers_on_tiny_weights():
    import_comfy()
    hf, processor = build_tiny_qwen_bundle(hidden=64)
    hf = hf.float().eval()
    core = core_language_model(hf.config, hf.state_dict())
    ids = torch.tensor([processor.tokenizer("User Prompt: make her smile slightly")["input_ids"]])
    with torch.no_grad():
        language = getattr(hf.model, "language_model", None) or hf.model
        expected = language(input_ids=ids).last_hidden_state
        got, _ = core(ids)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)



def tiny_core_clip(hf_model):
    """core's qwen_image CLIP at hf_model's sizes, holding hf_model's weights in the file layout core loads."""
    from unittest import mock

    import comfy.sd
    import comfy.text_encoders.llama as llama
    import comfy.text_encoders.qwen_image as qwen_image
    import comfy.text_encoders.qwen_vl as qwen_vl

    text, vision = hf_model.config.text_config, hf_model.config.vision_config

    class TinyQwen25VLI(llama.Qwen25_7BVLI):
        def __init__(self, config_dict, dtype, device, operations):
            torch.nn.Module.__init__(self)
            config = llama.Qwen25_7BVLI_Config(
                vocab_size=text.vocab_size, hidden_size=text.hidden_size, intermediate_size=text.intermediate_size,
                num_hidden_layers=text.num_hidden_layers, num_attention_heads=text.num_attention_heads,
                num_key_value_heads=text.num_key_value_heads, rms_norm_eps=text.rms_norm_eps,
                rope_theta=text.rope_parameters["rope_theta"])
            config.head_dim = text.hidden_size // text.num_attention_heads
            config.rope_dims = list(text.rope_parameters["mrope_section"])
            self.num_layers = config.num_hidden_layers
            self.model = llama.Llama2_(config, device=device, dtype=dtype, ops=operations)
            self.visual = qwen_vl.Qwen2VLVisionTransformer(
                hidden_size=vision.hidden_size, output_hidden_size=text.hidden_size,
                intermediate_size=vision.intermediate_size, num_heads=vision.num_heads, num_layers=vision.depth,
                window_size=vision.window_size, device=device, dtype=dtype, ops=operations)
            self.visual.fullatt_block_indexes = list(vision.fullatt_block_indexes)
            self.dtype = dtype

    class Target:
        clip = qwen_image.te(dtype_llama=torch.float32)
        tokenizer = qwen_image.QwenImageTokenizer
        params = {}

    with mock.patch.object(llama, "Qwen25_7BVLI", TinyQwen25VLI):   # read by core's Qwen25_7BVLIModel
        clip = comfy.sd.CLIP(Target)
    state = {}
    for key, value in hf_model.state_dict().items():   # transformers' names -> the file layout core loads
        for hf_prefix, core_prefix in (("model.language_model.", "model."), ("model.visual.", "visual."),
                                       ("visual.", "visual."), ("model.", "model.")):
            if key.startswith(hf_prefix):
                state[core_prefix + key[len(hf_prefix):]] = value
                break
    missing, unexpected = clip.load_sd(state)
    assert not missing and not unexpected, (missing, unexpected)
    return clip


def test_core_qwen_image_clip_encodes_step1x_prompts_as_transformers_does(tmp_path):
    """encode_with_clip on core's CLIP against the pack's transformers path (the release's), same tiny weights:
    hidden states and masks of the instruction and of the empty prompt, with the source crop as the image."""
    from transformers import Qwen2TokenizerFast

    from lato_core.engine.text_encoder import encode_hidden_pair, load_text_encoder
    from tests.tiny_qwen import build_tiny_processor, build_tiny_qwen

    import_comfy()
    import comfy.text_encoders.qwen_image as qwen_image
    tokenizer = Qwen2TokenizerFast.from_pretrained(Path(qwen_image.__file__).parent / "qwen25_tokenizer")
    processor = build_tiny_processor(tokenizer)
    hf = build_tiny_qwen(processor.tokenizer, hidden=64).float().eval()
    hf.save_pretrained(tmp_path / "qwen")
    processor.save_pretrained(tmp_path / "qwen")
    encoder = load_text_encoder(tmp_path / "qwen", device="cpu")   # the LaTo Text Encoder Loader's path
    encoder.model.float()
    crops = torch.rand(1, 96, 80, 3, generator=torch.Generator().manual_seed(0))
    instruction = "turn her head 30 degrees left and smile slightly"
    expected = encode_hidden_pair(encoder, instruction, crops)
    clip = tiny_core_clip(hf)
    clip_text = pack_node_module("lato_clip_text")
    for (want, want_mask), text in zip(expected, (instruction, "")):
        got, got_mask = clip_text.encode_with_clip(clip, text, crops)
        assert torch.equal(got_mask, want_mask), text
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    towers = pack_node_module("qwen_vision_order").vision_towers(clip)
    assert len(towers) == 1 and "forward" not in vars(towers[0])   # the raster-order wrapper is gone again


def test_core_0_3_75_leaves_image_tokens_in_window_order(tmp_path):
    """Why qwen_vision_order exists: core's tower alone returns the merged tokens in window order; argsort of
    its window index is exactly what turns them into transformers' raster order."""
    import_comfy()
    from comfy.text_encoders.qwen_vl import Qwen2VLVisionTransformer, process_qwen2vl_images

    order = pack_node_module("qwen_vision_order")
    if order.restores_raster_order(Qwen2VLVisionTransformer):
        pytest.skip("this ComfyUI's vision tower restores raster order itself")
    hf, _ = build_tiny_qwen_bundle(hidden=64)
    hf = hf.float().eval()
    clip = tiny_core_clip(hf)
    (tower,) = order.vision_towers(clip)
    pixels, grid = process_qwen2vl_images(torch.rand(1, 112, 112, 3, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        expected = hf.model.visual(pixels, grid_thw=grid).pooler_output
        raw = tower(pixels, grid)
        with order.image_tokens_in_raster_order(clip):
            fixed = tower(pixels, grid)
    torch.testing.assert_close(fixed, expected, rtol=0, atol=1e-5)
    assert (raw - expected).abs().max() > 1e-2
    window_index, _ = tower.get_window_index(grid)
    torch.testing.assert_close(raw[torch.argsort(window_index)], expected, rtol=0, atol=1e-5)
