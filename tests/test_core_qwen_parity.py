"""ComfyUI core's Qwen2.5-VL language model (the one CLIPLoader type qwen_image runs) against transformers', on the
same tiny weights. Core hard-codes the 7B sizes of its config and vision tower, so only the language model can be
built small: text-only hidden states (the part of LaTo's conditioning after the image) are compared, in fp32."""
from __future__ import annotations

import pytest
import torch

from tests.tiny_qwen import build_tiny_qwen_bundle
from tests.tiny_sd15 import import_comfy

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
