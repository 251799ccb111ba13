"""Text path: Step1X connector parity and key names, the Qwen prompt (prefix drop, padding), encode_text + cache,
and strict connector loading."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lato_core.errors import ModelFileError
from PIL import Image

from lato_core.text import (ConnectorConfig, Qwen2Connector, RELEASE_PREFIX_DROP,
                            STEP1X_PREFIX, build_qwen_inputs, clear_text_cache, encode_hidden, encode_text,
                            load_connector, prefix_drop)
from lato_core.text.qwen_prompt import render_chat, resize_for_qwen, split_quoted, to_pil_rgb
from tests.tiny_qwen import build_tiny_qwen_bundle

TINY = ConnectorConfig(in_dim=64, hidden_size=32, num_heads=4, depth=2, mlp_ratio=4.0, pooled_dim=16)

# Step1X release modules (connector.* keys, prefix removed): a linear has .weight (out x in) and .bias (out),
# a norm (LayerNorm) .weight and .bias. R = refiner width, Q = Qwen width, Y = pooled width (768 released).
STEP1X_CONNECTOR_MODULES = """
scale_factor                                              param   1
global_proj_out                                           linear  Y x Q
S.input_embedder                                          linear  R x Q
S.t_embedder.mlp.0                                        linear  R x 256
S.t_embedder.mlp.2                                        linear  R x R
S.c_embedder.linear_1                                     linear  R x Q
S.c_embedder.linear_2                                     linear  R x R
S.individual_token_refiner.blocks.{i}.norm1               norm    R
S.individual_token_refiner.blocks.{i}.self_attn_qkv       linear  3R x R
S.individual_token_refiner.blocks.{i}.self_attn_proj      linear  R x R
S.individual_token_refiner.blocks.{i}.norm2               norm    R
S.individual_token_refiner.blocks.{i}.mlp.fc1             linear  4R x R
S.individual_token_refiner.blocks.{i}.mlp.fc2             linear  R x 4R
S.individual_token_refiner.blocks.{i}.adaLN_modulation.1  linear  2R x R
"""


def expected_keys(cfg: ConnectorConfig) -> dict[str, tuple[int, ...]]:
    dims = {"Q": cfg.in_dim, "R": cfg.hidden_size, "Y": cfg.pooled_dim}
    size = lambda term: int(term[:-1] or 1) * dims[term[-1]] if term[-1] in dims else int(term)
    table = {}
    for line in STEP1X_CONNECTOR_MODULES.strip().splitlines():
        path, kind, shape = line.split(None, 2)
        for i in range(cfg.depth) if "{i}" in path else [0]:
            dims_ = tuple(size(term) for term in shape.split(" x "))
            name = path.format(i=i)
            if kind == "param":
                table[name] = dims_
            else:
                table[f"{name}.weight"], table[f"{name}.bias"] = dims_, dims_[:1]
    return table


def random_connector_state(cfg: ConnectorConfig = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in expected_keys(cfg).items():
        noise = torch.randn(shape, generator=gen)
        state[key] = noise / math.sqrt(shape[1]) if len(shape) == 2 else (
            1 + 0.2 * noise if "norm" in key else 0.3 * noise)
    return state


def tiny_connector(seed: int = 0) -> Qwen2Connector:
    return load_connector(random_connector_state(TINY, seed), dtype=torch.float32, config=TINY)


def reference_connector(p: dict, x, t, mask, cfg: ConnectorConfig):
    """Step1X's connector from its formulas: explicit LayerNorm, SiLU MLPs and a masked softmax."""
    lin = lambda v, name: v @ p[name + ".weight"].T + p[name + ".bias"]
    silu = lambda v: v * torch.sigmoid(v)
    def layer_norm(v, name):
        mu, var = v.mean(-1, keepdim=True), v.var(-1, unbiased=False, keepdim=True)
        return (v - mu) / torch.sqrt(var + 1e-6) * p[name + ".weight"] + p[name + ".bias"]
    m = mask.float()
    mean = (x * m[..., None]).sum(1) / m.sum(1, keepdim=True)
    pooled = lin(mean * (1 + p["scale_factor"]), "global_proj_out")   # scale in the activations' dtype

    half = cfg.timestep_freq_dim // 2
    args = 1000 * t[:, None] * torch.exp(-math.log(10000) * torch.arange(half) / half)[None]
    t_feat = torch.cat([torch.cos(args), torch.sin(args)], -1)
    c = lin(silu(lin(t_feat, "S.t_embedder.mlp.0")), "S.t_embedder.mlp.2") + \
        lin(silu(lin(mean, "S.c_embedder.linear_1")), "S.c_embedder.linear_2")
    h = lin(x, "S.input_embedder")
    allowed = m.bool()[:, :, None] & m.bool()[:, None, :]
    allowed[:, :, 0] = True
    batch, length, heads = x.shape[0], x.shape[1], cfg.num_heads
    for i in range(cfg.depth):
        pre = f"S.individual_token_refiner.blocks.{i}."
        gate_attn, gate_mlp = lin(silu(c), pre + "adaLN_modulation.1").chunk(2, -1)
        q, k, v = lin(layer_norm(h, pre + "norm1"), pre + "self_attn_qkv").view(
            batch, length, 3, heads, -1).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        weights = torch.softmax(scores.masked_fill(~allowed[:, None], float("-inf")), -1)
        attn = (weights @ v).transpose(1, 2).reshape(batch, length, -1)
        h = h + gate_attn[:, None] * lin(attn, pre + "self_attn_proj")
        mlp = lin(silu(lin(layer_norm(h, pre + "norm2"), pre + "mlp.fc1")), pre + "mlp.fc2")
        h = h + gate_mlp[:, None] * mlp
    return h, pooled


def test_connector_keys_are_step1x_names():
    assert {k: tuple(v.shape) for k, v in Qwen2Connector(TINY).state_dict().items()} == expected_keys(TINY)
    release = expected_keys(ConnectorConfig.release())
    assert release["S.individual_token_refiner.blocks.1.mlp.fc1.weight"] == (16384, 4096)
    assert release["S.input_embedder.weight"] == (4096, 3584) and release["global_proj_out.weight"] == (768, 3584)
    assert len(release) == 13 + 14 * 2


def test_connector_matches_reference_formulas():
    state = random_connector_state(TINY, seed=3)
    connector = load_connector(state, dtype=torch.float32, config=TINY)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 12, TINY.in_dim, generator=gen)
    mask = torch.zeros(2, 12, dtype=torch.long)
    mask[0, :7], mask[1, :12] = 1, 1
    t = torch.tensor([0.83, 0.21])
    tokens, pooled = connector(x, t, mask)
    ref_tokens, ref_pooled = reference_connector(state, x, t, mask, TINY)
    assert tokens.shape == (2, 12, TINY.hidden_size) and pooled.shape == (2, TINY.pooled_dim)
    torch.testing.assert_close(tokens, ref_tokens, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(pooled, ref_pooled, atol=2e-5, rtol=1e-4)
    # t enters as given (in [0, 1]); the tokens change with t, the pooled vector does not
    tokens_late, pooled_late = connector(x, 0.5, mask)
    assert (tokens_late - tokens).abs().max() > 1e-3
    torch.testing.assert_close(pooled_late, pooled)


def test_prompt_facts_and_quote_split():
    assert RELEASE_PREFIX_DROP == 217
    assert STEP1X_PREFIX.startswith("Given a user prompt") and STEP1X_PREFIX.endswith("User Prompt:")
    assert len(STEP1X_PREFIX) == 1058 and "overcomplicating.\n\nHere" in STEP1X_PREFIX
    text = "x" * 160 + 'write "AB" now'
    assert split_quoted(text) == ["x" * 160 + 'write "', "“A”", "“B”", '" now']
    assert split_quoted('"early" ' + "y" * 150) == ['"early" ' + "y" * 150]   # quotes before index 156 stay
    assert np.asarray(to_pil_rgb(torch.tensor([[[0.5, 0.999, 1.0]]]))).tolist() == [[[127, 254, 255]]]  # truncated


@pytest.fixture(scope="module")
def tiny_bundle():
    model, processor = build_tiny_qwen_bundle(hidden=TINY.in_dim)
    calls = []
    model.model.register_forward_hook(lambda *args: calls.append(1))
    return model, processor, calls


@pytest.fixture(scope="module")
def face_image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8))


def test_prefix_drop_equals_tokenized_prefix(tiny_bundle, face_image):
    _, processor, _ = tiny_bundle
    tok = processor.tokenizer
    header = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    prefix_tokens = tok(header + STEP1X_PREFIX, add_special_tokens=False)["input_ids"]
    drop = prefix_drop(processor)
    assert drop == len(prefix_tokens) - 1   # the release keeps the prefix's last token (':')
    inputs = build_qwen_inputs(processor, "smile", face_image)
    ids = inputs.input_ids[0]
    assert inputs.drop == drop and ids[: drop + 1].tolist() == prefix_tokens
    assert tok.decode(ids[drop:drop + 13].tolist()) == ":Picture 1: <|vision_start|>"
    assert tuple(inputs.image_grid_thw[0].tolist()) == (1, 36, 36)   # 512 -> 504 px = 324 * 28^2
    assert int((ids == tok.convert_tokens_to_ids("<|image_pad|>")).sum()) == 324


def processor_token_types(processor, text, image) -> dict:
    """The image-token marks transformers' own processor makes (transformers 5 needs them for M-RoPE positions;
    older versions return none), for a reference forward of an unquoted instruction."""
    pil = resize_for_qwen(to_pil_rgb(image))
    out = processor(text=[render_chat(processor, text, pil)], images=[pil], return_tensors="pt")
    return {"mm_token_type_ids": out["mm_token_type_ids"]} if "mm_token_type_ids" in out else {}


def test_padding_and_cutting_with_mask(tiny_bundle, face_image):
    model, processor, _ = tiny_bundle
    clear_text_cache()
    connector = tiny_connector()
    short, long_text = "smile!", "open the mouth wide and raise both eyebrows " * 12
    with torch.no_grad():
        full = {}
        for text in (short, long_text):
            inputs = build_qwen_inputs(processor, text, face_image)
            full[text] = model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                               pixel_values=inputs.pixel_values, image_grid_thw=inputs.image_grid_thw,
                               **processor_token_types(processor, text, face_image),
                               output_hidden_states=True).hidden_states[-1][0, inputs.drop:]
            assert inputs.attention_mask[0].tolist().count(0) == text.count("!")   # "!" is id 0: masked
    cond = encode_text(model, processor, connector, [short, long_text], face_image, max_length=400)
    kept = full[short].shape[0]
    assert 340 < kept < 400 and full[long_text].shape[0] > 400
    assert cond.mask[0].tolist() == [1] * kept + [0] * (400 - kept) and cond.mask[1].tolist() == [1] * 400
    torch.testing.assert_close(cond.hidden[0, :kept], full[short], atol=1e-5, rtol=1e-5)
    assert cond.hidden[0, kept:].abs().max() == 0
    torch.testing.assert_close(cond.hidden[1], full[long_text][:400], atol=1e-5, rtol=1e-5)


def test_encode_text_end_to_end_and_cache(tiny_bundle, face_image):
    model, processor, calls = tiny_bundle
    clear_text_cache()
    connector = tiny_connector()
    calls.clear()
    cond = encode_text(model, processor, connector, ["make her smile", ""], face_image)
    assert len(calls) == 2
    assert cond.hidden.shape == (2, 640, TINY.in_dim) and cond.mask.shape == (2, 640)
    assert cond.pooled.shape == (2, TINY.pooled_dim)
    tokens = cond.tokens(0.7)
    assert tokens.shape == (2, 640, TINY.hidden_size) and torch.isfinite(tokens).all()
    ref_tokens, ref_pooled = reference_connector(random_connector_state(TINY), cond.hidden, torch.full((2,), 0.7),
                                                 cond.mask, TINY)
    torch.testing.assert_close(tokens, ref_tokens, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cond.pooled, ref_pooled, atol=1e-4, rtol=1e-4)

    again = encode_text(model, processor, connector, ["make her smile", ""], face_image)
    assert len(calls) == 2 and again is cond and again.hidden is cond.hidden and again.pooled is cond.pooled

    clear_text_cache()   # deterministic: a fresh run gives the same numbers
    hidden, mask = encode_hidden(model, processor, ["make her smile", ""], face_image)   # the native model's input
    torch.testing.assert_close(hidden, cond.hidden, atol=0, rtol=0)
    assert torch.equal(mask, cond.mask)
    assert len(calls) == 4

    as_tensor = torch.from_numpy(np.array(face_image)).float()[None] / 255.0   # ComfyUI IMAGE layout
    other = encode_text(model, processor, connector, ["close her eyes", ""], as_tensor)
    assert len(calls) == 5   # new instruction: one miss; the "" row is cached (same pixels)
    assert not torch.equal(other.hidden[0], cond.hidden[0]) and torch.equal(other.hidden[1], cond.hidden[1])


def test_connector_loads_from_safetensors_strictly(tmp_path):
    from safetensors.torch import save_file

    state = random_connector_state(TINY, seed=5)
    dit_like = {f"connector.{k}": v for k, v in state.items()} | {"img_in.weight": torch.zeros(4, 4)}
    path = tmp_path / "dit.safetensors"
    save_file(dit_like, str(path))
    connector = load_connector(path, dtype=torch.float32, config=TINY)
    for key, value in connector.state_dict().items():
        assert torch.equal(value, state[key]), key

    broken = {k: v for k, v in dit_like.items() if "blocks.1.mlp.fc2.bias" not in k}
    broken["connector.global_proj_out.weight"] = torch.zeros(16, 63)
    save_file(broken, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ModelFileError) as info:
        load_connector(tmp_path / "broken.safetensors", config=TINY)
    message = str(info.value)
    assert "missing (1)" in message and "S.individual_token_refiner.blocks.1.mlp.fc2.bias" in message
    assert "global_proj_out.weight: file [16, 63], expected [16, 64]" in message
    with pytest.raises(match="not found"):
        load_connector(tmp_path / "nope.safetensors", config=TINY)


def test_connector_state_from_load_dit(tmp_path):
    from safetensors.torch import save_file

    from lato_core.dit import load_dit
    from tests.tiny_dit import TINY as TINY_DIT, random_bfl_state_dict, tiny_inputs

    cfg = ConnectorConfig(in_dim=64, hidden_size=TINY_DIT.context_in_dim, num_heads=4, depth=2,
                          pooled_dim=TINY_DIT.vec_in_dim)
    state = random_connector_state(cfg, seed=7)
    path = tmp_path / "lato.safetensors"
    save_file(random_bfl_state_dict(TINY_DIT) | {f"connector.{k}": v for k, v in state.items()}, str(path))
    loaded = load_dit(path, dtype=torch.float32, config=TINY_DIT)
    connector = load_connector(loaded.connector_state, dtype=torch.float32, config=cfg)
    x, mask = torch.randn(1, 5, 64), torch.ones(1, 5, dtype=torch.long)
    assert all(torch.equal(v, state[k]) for k, v in connector.state_dict().items())
    tokens, pooled = connector(torch.randn(1, 5, 64), 0.4, torch.ones(1, 5, dtype=torch.long))
    inputs = tiny_inputs(txt_len=5) | {"txt": tokens, "y": pooled, "timesteps": torch.tensor([0.4])}
    velocity = loaded.model(**inputs, grid_hw=(4, 6))   # tokens feed txt_in inside the DiT, pooled feeds vector_in
    assert velocity.shape == (1, 24, TINY_DIT.in_channels) and torch.isfinite(velocity).all()
