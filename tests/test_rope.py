"""Position ids of every token kind and the rotary embedding itself."""
from __future__ import annotations

import torch

from lato_core.dit.rope import apply_rope, image_ids, landmark_ids, landmark_scales, rope_cos_sin, text_ids

AXES = (4, 14, 14)


def test_text_and_image_ids():
    assert torch.equal(text_ids(3), torch.zeros(3, 3))
    expected = torch.tensor([[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0], [0, 1, 1], [0, 1, 2]], dtype=torch.float32)
    assert torch.equal(image_ids(2, 3), expected)  # row-major (0, row, col)


def test_landmark_ids_square_512():
    # 512x512 image -> 32x32 latent grid; landmarks on the 512 canvas: s_y = s_x = 512 / 32 = 16
    xy = torch.tensor([[0.0, 0.0], [256.0, 128.0], [511.0, 300.0], [100.5, 7.0]])
    expected = torch.tensor([[0, 0, 0], [0, 8, 16], [0, 18.75, 31.9375], [0, 0.4375, 6.28125]])
    for release in (False, True):
        assert landmark_scales((512, 512), (32, 32), release) == (16.0, 16.0)
        ids = landmark_ids(xy, (32, 32), (512, 512), release_height_only_scaling=release)
        torch.testing.assert_close(ids, expected, rtol=0, atol=1e-6)


def test_landmark_ids_non_square_512x768():
    # image 512 high x 768 wide -> grid 32 x 48; landmarks on the release's 512x512 canvas
    xy = torch.tensor([[256.0, 128.0], [512.0, 512.0], [64.0, 480.0]])
    s_x = 512 / 48
    assert landmark_scales((512, 512), (32, 48)) == (16.0, s_x)
    per_axis = landmark_ids(xy, (32, 48), (512, 512))
    torch.testing.assert_close(per_axis, torch.tensor([[0.0, 8, 24], [0, 32, 48], [0, 30, 6]]), rtol=0, atol=1e-5)
    assert abs(256 / s_x - 24) < 1e-9
    # release: s = 512 / (512 / 16) = 16 on BOTH axes, so x only reaches 32 of the 48 columns
    release = landmark_ids(xy, (32, 48), (512, 512), release_height_only_scaling=True)
    torch.testing.assert_close(release, torch.tensor([[0.0, 8, 16], [0, 32, 32], [0, 30, 4]]), rtol=0, atol=1e-6)
    # coordinates measured on the real 512x768 image instead: both axes 16 px per cell
    native = landmark_ids(torch.tensor([[768.0, 512.0]]), (32, 48), (512, 768))
    torch.testing.assert_close(native, torch.tensor([[0.0, 32.0, 48.0]]))


def test_landmark_ids_keep_batch_shape():
    xy = torch.rand(2, 68, 2) * 512
    assert landmark_ids(xy, (32, 32)).shape == (2, 68, 3)


def test_rope_frequencies_match_diffusers_flux_pos_embed():
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    ids = torch.cat([text_ids(4), image_ids(5, 7), landmark_ids(torch.rand(6, 2) * 512, (5, 7))])
    cos, sin = rope_cos_sin(ids, AXES, 10_000)
    ref_cos, ref_sin = FluxPosEmbed(theta=10_000, axes_dim=list(AXES))(ids)
    assert cos.dtype == torch.float32 and cos.shape == (ids.shape[0], sum(AXES) // 2)
    torch.testing.assert_close(cos.repeat_interleave(2, -1), ref_cos.float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(sin.repeat_interleave(2, -1), ref_sin.float(), rtol=0, atol=1e-6)


def test_apply_rope_matches_diffusers_and_is_relative():
    from diffusers.models.embeddings import apply_rotary_emb
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    gen = torch.Generator().manual_seed(0)
    ids = landmark_ids(torch.rand(9, 2, generator=gen) * 512, (32, 32))
    x = torch.randn(1, 2, 9, sum(AXES), generator=gen)
    cos, sin = rope_cos_sin(ids, AXES, 10_000)
    ours = apply_rope(x, cos[None, None], sin[None, None])
    ref = apply_rotary_emb(x, FluxPosEmbed(10_000, list(AXES))(ids), sequence_dim=2)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)

    # q.k after RoPE depends only on the position difference, also for fractional landmark positions
    q, k = torch.randn(2, sum(AXES), generator=gen)
    pos = torch.tensor([[0.0, 3.25, 7.5], [0.0, 10.0, 1.125]])

    def dot(shift: float) -> torch.Tensor:
        c, s = rope_cos_sin(pos + torch.tensor([0.0, shift, -shift]), AXES, 10_000)
        rq = apply_rope(q.view(1, 1, 1, -1), c[None, None, :1], s[None, None, :1])
        rk = apply_rope(k.view(1, 1, 1, -1), c[None, None, 1:], s[None, None, 1:])
        return (rq * rk).sum()

    torch.testing.assert_close(dot(0.0), dot(4.5), rtol=0, atol=1e-4)
    c0, s0 = rope_cos_sin(torch.zeros(1, 3), AXES, 10_000)
    torch.testing.assert_close(apply_rope(x[:, :, :1], c0[None, None], s0[None, None]), x[:, :, :1])


NON_SQUARE_XY = [[48.0, 32.0], [72.0, 60.0], [12.0, 8.0]]   # pixels on a 96 wide x 64 high crop
# grid 4 x 6: per-axis s_y = 64/4 = 16, s_x = 96/6 = 16. The release stretches the crop to 512 x 512
# (x * 512/96, y * 512/64) and divides both by 512/4 = 128: (48, 32) -> (256, 256) -> (2, 2).
NON_SQUARE_PER_AXIS = [[0.0, 2.0, 3.0], [0.0, 3.75, 4.5], [0.0, 0.5, 0.75]]
NON_SQUARE_RELEASE = [[0.0, 2.0, 2.0], [0.0, 3.75, 3.0], [0.0, 0.5, 0.5]]


def test_non_square_96x64_ids_by_hand():
    xy = torch.tensor(NON_SQUARE_XY)
    per_axis = landmark_ids(xy, (4, 6), (64, 96))
    release = landmark_ids(xy, (4, 6), (64, 96), release_height_only_scaling=True)
    torch.testing.assert_close(per_axis, torch.tensor(NON_SQUARE_PER_AXIS), rtol=0, atol=1e-6)
    torch.testing.assert_close(release, torch.tensor(NON_SQUARE_RELEASE), rtol=0, atol=1e-6)
    # the release's own computation: the 512 canvas, height-derived scale on both axes
    stretched = xy * torch.tensor([512 / 96, 512 / 64])
    torch.testing.assert_close(release, landmark_ids(stretched, (4, 6), (512, 512), True), rtol=0, atol=1e-6)


def test_node_path_reproduces_release_ids_on_a_non_square_crop():
    """Landmarks on the crop's own pixels -> tokenize_landmarks (the node's call) -> the ids the DiT builds."""
    import numpy as np

    from lato_core.engine.run import tokenize_landmarks
    from lato_core.face.landmarks import FaceLandmarks
    from tests.tiny_tokenizer import tiny_tokenizer

    points = np.full((68, 2), 8.0)
    points[:3] = NON_SQUARE_XY
    tokens = tokenize_landmarks(tiny_tokenizer(), [FaceLandmarks(points, (96, 64))])
    assert tokens.canvas_hw == (64, 96)
    for release, expected in ((False, NON_SQUARE_PER_AXIS), (True, NON_SQUARE_RELEASE)):
        ids = landmark_ids(tokens.xy, (4, 6), tokens.canvas_hw, release)
        torch.testing.assert_close(ids[0, :3], torch.tensor(expected), rtol=0, atol=1e-6)
