"""Image conversions and the affine resampler under crop and stitch."""
import numpy as np
import pytest
import torch

from lato_core.errors import ImageFormatError
from lato_core.face.image import as_rgb_float, as_rgb_uint8, check_image_size
from lato_core.face.landmarks import FaceLandmarks, clamp_to_canvas
from lato_core.face.affine import apply_affine, compose_affine, invert_affine, warp_affine


def test_conversions_accept_gray_rgba_uint8_and_tensors():
    rgba = np.random.default_rng(0).integers(0, 256, (8, 9, 4), dtype=np.uint8)
    assert np.array_equal(as_rgb_uint8(rgba), rgba[..., :3])
    gray = torch.rand(8, 9)
    out = as_rgb_float(gray)
    assert out.shape == (8, 9, 3) and np.allclose(out[..., 0], gray.numpy()) and np.allclose(out[..., 2], gray.numpy())
    assert as_rgb_float(np.full((2, 2, 3), 2.0)).max() == 1.0  # overshoot from upstream nodes is clamped
    with pytest.raises(ImageFormatError, match="NaN"):
        as_rgb_float(np.full((2, 2, 3), np.nan))
    with pytest.raises(ImageFormatError, match="shape"):
        as_rgb_float(np.zeros((1, 2, 2, 3)))
    with pytest.raises(ImageFormatError, match="limit is 100 MP"):
        check_image_size(20000, 10000)


def test_affine_helpers_invert_and_compose():
    m = np.array([[1.3, -0.2, 5.0], [0.4, 0.9, -3.0]])
    pts = np.random.default_rng(1).normal(size=(10, 2)) * 50
    assert np.allclose(apply_affine(invert_affine(m), apply_affine(m, pts)), pts)
    assert np.allclose(apply_affine(compose_affine(m, invert_affine(m)), pts), pts)


def test_identity_and_integer_shift_warps_are_exact():
    img = torch.rand(1, 3, 20, 30)
    same, inside = warp_affine(img, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (20, 30))
    assert torch.allclose(same, img, atol=1e-5) and inside.min() == 1
    shifted, inside = warp_affine(img, np.array([[1.0, 0, -4], [0, 1.0, -2]]), (20, 30))  # out[y, x] = img[y+2, x+4]
    assert torch.allclose(shifted[..., :18, :26], img[..., 2:, 4:], atol=1e-5)
    assert inside[0, 0, :18, :26].min() == 1 and inside[0, 0, :, 27:].max() == 0


def test_antialiasing_removes_moire_when_shrinking():
    stripes = torch.zeros(1, 1, 64, 64)
    stripes[..., ::2] = 1.0  # finest possible detail
    quarter = np.array([[0.25, 0, 0.375 - 0.5 + 0.5 * 0.25], [0, 0.25, 0.375 - 0.5 + 0.5 * 0.25]])
    smooth, _ = warp_affine(stripes, quarter, (16, 16), antialias=True)
    raw, _ = warp_affine(stripes, quarter, (16, 16), antialias=False)
    assert abs(smooth.mean() - 0.5) < 0.05 and smooth.std() < 0.05  # flat grey, as it should be
    assert abs(raw.mean() - 0.5) > 0.3  # without it, every sample hits a bright stripe


def test_clamp_to_canvas_moves_points_onto_the_edge(astronaut_face):
    pts = astronaut_face.points.copy()
    face = FaceLandmarks(pts, (512, 512))
    moved = clamp_to_canvas(face.with_points(pts, image_size=(240, 240), visibility=np.zeros(68)))
    assert moved.points.max() == 239.5 and moved.points.min() >= -0.5
