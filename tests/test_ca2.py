"""CA2 (CA-Edit Eq. 2-6): the functional attention against the paper's formula, and the trainable module."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from caedit_core.ca2 import CA2Attention, CA2Config, ScorePredictor, ca2_attention, mask_to_tokens

B, NQ, NT, NV, HEADS, DH = 2, 12, 5, 4, 2, 8
C = HEADS * DH


def _inputs(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, kt, vt = (torch.randn(B, n, C, generator=g, dtype=dtype) for n in (NQ, NT, NT))
    kv, vv = (torch.randn(B, NV, C, generator=g, dtype=dtype) for _ in range(2))
    score = torch.rand(B, NQ, generator=g, dtype=dtype)
    mask = torch.rand(B, NQ, generator=g, dtype=dtype)
    return q, kt, vt, kv, vv, score, mask


def _direct_formula(q, kt, vt, kv, vv, score, mask, joint):
    """Eq. 4-6 written out per sample and head, softmax as exp / sum."""
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(HEADS):
            cols = slice(h * DH, (h + 1) * DH)
            e_txt = torch.exp(q[b, :, cols] @ kt[b, :, cols].T / math.sqrt(DH))
            e_vis = torch.exp(q[b, :, cols] @ kv[b, :, cols].T / math.sqrt(DH))
            if joint:
                total = e_txt.sum(1, keepdim=True) + e_vis.sum(1, keepdim=True)
                a_txt, a_vis = e_txt / total, e_vis / total
            else:
                a_txt, a_vis = e_txt / e_txt.sum(1, keepdim=True), e_vis / e_vis.sum(1, keepdim=True)
            a_vis_s = a_vis * (1 - score[b] * mask[b])[:, None]  # Eq. 5
            out[b, :, cols] = a_txt @ vt[b, :, cols] + a_vis_s @ vv[b, :, cols]  # Eq. 6
    return out


def _sdpa(q, k, v):
    split = lambda t: t.reshape(t.shape[0], t.shape[1], HEADS, DH).transpose(1, 2)  # noqa: E731
    return F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(q.shape)


@pytest.mark.parametrize("softmax_over", ["separate", "joint"])
def test_ca2_equals_direct_formula_on_random_tensors(softmax_over):
    q, kt, vt, kv, vv, score, mask = _inputs()
    got = ca2_attention(q, kt, vt, kv, vv, score, mask, HEADS, softmax_over=softmax_over)
    want = _direct_formula(q, kt, vt, kv, vv, score, mask, joint=softmax_over == "joint")
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_all_zero_mask_equals_plain_decoupled_attention():
    q, kt, vt, kv, vv, score, _ = _inputs(torch.float32)
    got = ca2_attention(q, kt, vt, kv, vv, score, torch.zeros(B, NQ), HEADS)
    plain = _sdpa(q, kt, vt) + _sdpa(q, kv, vv)  # IP-Adapter: text attention + image attention, scale 1
    assert (got - plain).abs().max() < 1e-5


def test_score_one_inside_mask_removes_visual_term_there_and_nowhere_else():
    q, kt, vt, kv, vv, _, _ = _inputs(torch.float32, seed=1)
    mask = (torch.arange(NQ) % 3 == 0).float().expand(B, NQ)
    inside = mask.bool()
    got = ca2_attention(q, kt, vt, kv, vv, torch.ones(B, NQ), mask, HEADS)
    text_only, plain = _sdpa(q, kt, vt), _sdpa(q, kv, vv) + _sdpa(q, kt, vt)
    assert (got[inside] - text_only[inside]).abs().max() < 1e-5
    assert (got[~inside] - plain[~inside]).abs().max() < 1e-5
    # outside, the visual term is really there (so the check above is not vacuous)
    assert (got[~inside] - text_only[~inside]).abs().amax(-1).min() > 1e-2


def test_mask_to_tokens_area_averages_hand_example():
    mask = torch.tensor([[1., 1., 0., 0.],
                         [1., 0., 0., 0.],
                         [0., 0., 1., 1.],
                         [0., 0., 1., 0.]])
    tokens = mask_to_tokens(mask, 2, 2)  # (H, W) -> batch of 1, row-major 2x2 tokens
    assert torch.equal(tokens, torch.tensor([[0.75, 0.0, 0.0, 0.75]]))
    batch = mask_to_tokens(torch.stack([mask, 1 - mask]), 1, 2)
    assert torch.allclose(batch, torch.tensor([[3 / 8, 3 / 8], [5 / 8, 5 / 8]]))


def test_score_predictor_is_the_two_layer_formula_in_zero_one():
    torch.manual_seed(0)
    pred = ScorePredictor(latent_dim=6, pooled_text_dim=3, hidden_dim=7)
    z, pooled = torch.randn(B, NQ, 6) * 3, torch.randn(B, 3) * 3
    score = pred(z, pooled)
    assert score.shape == (B, NQ)
    assert bool(((score > 0) & (score < 1)).all())
    cat = torch.cat([z, pooled[:, None].expand(B, NQ, 3)], -1)  # Concat(Z, f_txt^s), Eq. 3
    hidden = F.silu(cat @ pred.fc1.weight.T + pred.fc1.bias)
    want = torch.sigmoid(hidden @ pred.fc2.weight[0] + pred.fc2.bias)
    assert torch.allclose(score, want, atol=1e-6)
    assert (pred(z, -pooled) - score).abs().max() > 1e-3  # the text token matters
    soft = ScorePredictor(6, 3, 7, activation="softmax")(z, pooled)
    assert torch.allclose(soft.sum(-1), torch.ones(B))


def test_module_uses_its_projections_and_returns_text_attention():
    torch.manual_seed(0)
    cfg = CA2Config(inner_dim=C, heads=HEADS, clip_dim=10, latent_dim=C, pooled_text_dim=3, score_hidden_dim=8)
    layer = CA2Attention(cfg)
    q, kt, vt, _, _, _, mask = _inputs(torch.float32)
    clip_tokens, pooled = torch.randn(B, NV, 10), torch.randn(B, 3)
    out, text_attn = layer(q, kt, vt, q, clip_tokens, pooled, mask, return_text_attn=True)
    kv, vv = clip_tokens @ layer.to_k_vis.weight.T, clip_tokens @ layer.to_v_vis.weight.T
    want = ca2_attention(q, kt, vt, kv, vv, layer.score_predictor(q, pooled), mask, HEADS)
    assert torch.allclose(out, want, atol=1e-6)
    assert text_attn.shape == (B, NQ, NT) and torch.allclose(text_attn.sum(-1), torch.ones(B, NQ))
