"""The TPS warp preview: exact at the landmarks, pinned at the border, and it moves the face."""
import time

import numpy as np
import pytest
import torch

from lato_core.errors import FaceEditError
from lato_core.face.crop import _footprint, crop_faces, stitch_faces
from lato_core.face.detect import detect_faces
from lato_core.predictor.thin_plate_preview import eval_tps, fit_tps, warp_crop, warp_field


@pytest.fixture(scope="module")
def crop(astronaut, astronaut_face):
    crops, transforms, mapped = crop_faces(astronaut, [astronaut_face])
    return crops, transforms, mapped[0]


def _smile(face, amount=10.0):
    """Mouth corners out and up, lower lip down a little: a synthetic target."""
    pts = face.points.copy()
    pts[48] += [-amount, -amount * 0.6]
    pts[54] += [amount, -amount * 0.6]
    pts[[49, 59]] += [-amount / 2, -amount * 0.3]
    pts[[53, 55]] += [amount / 2, -amount * 0.3]
    pts[56:59] += [0, amount * 0.3]
    return face.with_points(pts)


def test_tps_interpolates_its_control_points_exactly():
    rng = np.random.default_rng(0)
    ctrl = torch.from_numpy(rng.random((20, 2)))
    vals = ctrl + torch.from_numpy(rng.normal(0, 0.02, (20, 2)))
    tps = fit_tps(ctrl, vals)
    assert torch.allclose(eval_tps(tps, ctrl), vals, atol=1e-9)
    # A TPS holds an affine part: an affine map is reproduced everywhere, not only at the control points.
    matrix = torch.tensor([[1.1, 0.2], [-0.1, 0.9]], dtype=torch.float64)
    probe = torch.from_numpy(rng.random((50, 2)))
    assert torch.allclose(eval_tps(fit_tps(ctrl, ctrl @ matrix + 0.05), probe), probe @ matrix + 0.05, atol=1e-8)


def test_field_maps_targets_to_sources_and_keeps_the_border(crop):
    _, _, face = crop
    target = _smile(face)
    field = warp_field(face.points, target.points, 512).numpy()
    for i in (48, 54, 57, 30):
        x, y = np.round(target.points[i]).astype(int)
        expected = face.points[i] + (np.array([x, y]) - target.points[i])  # near-identity Jacobian
        assert np.linalg.norm(field[y, x] - expected) < 0.6, i
    identity = np.stack(np.meshgrid(np.arange(512), np.arange(512)), -1)
    assert np.abs(field[0] - identity[0]).max() < 0.25 and np.abs(field[:, -1] - identity[:, -1]).max() < 0.25  # pinned
    assert np.abs(field - identity).max() < 12


def test_fold_guard_leaves_local_edits_exact_and_smooths_only_when_squeezed(crop):
    from lato_core.predictor.thin_plate_preview import MIN_AREA_RATIO, min_jacobian

    _, _, face = crop
    area = lambda field: min_jacobian(field[::4, ::4].double() / 511)  # smallest local area ratio
    local = warp_field(face.points, _smile(face).points, 512)
    assert torch.equal(local, warp_field(face.points, _smile(face).points, 512, fold_guard=False))
    assert area(local) > MIN_AREA_RATIO
    # Eyes pulled 3x apart: sampling them back squeezes the source there about 9x in area.
    target = face.points.copy()
    centre = face.points[36:48].mean(axis=0)
    target[36:48] = centre + (face.points[36:48] - centre) * 3
    plain = warp_field(face.points, target, 512, fold_guard=False)
    guarded = warp_field(face.points, target, 512)
    assert area(plain) < MIN_AREA_RATIO < area(guarded) + 0.02


def test_no_change_is_an_exact_identity(crop):
    crops, _, face = crop
    out = warp_crop(crops[0], face, face)
    assert (out - crops[0]).abs().max() < 1e-4


def test_warped_face_shows_landmarks_nearer_the_targets(crop, astronaut, astronaut_face):
    crops, transforms, face = crop
    target = _smile(face, 12.0)
    warped = warp_crop(crops[0], face, target)
    found = detect_faces(warped)[0].points
    moved = [48, 54]
    to_target = np.linalg.norm(found[moved] - target.points[moved], axis=1)
    to_source = np.linalg.norm(found[moved] - face.points[moved], axis=1)
    assert (to_target < to_source).all(), (to_target, to_source)
    # Stitched back, nothing outside the crop changes.
    out = stitch_faces(astronaut, warped[None], transforms)
    x0, y0, x1, y1 = _footprint(transforms[0], 512, 512)
    outside = torch.ones(512, 512, dtype=torch.bool)
    outside[y0:y1, x0:x1] = False
    assert torch.equal(out[0][outside], astronaut[0][outside])


def test_hidden_points_do_not_pull_and_bad_sizes_are_refused(crop):
    crops, _, face = crop
    far = face.points.copy()
    far[8] += [0, 60]
    vis = np.ones(68)
    vis[8] = 0
    hidden = face.with_points(far.clip(0, 511), visibility=vis)
    out = warp_crop(crops[0], face, hidden)
    assert (out - crops[0]).abs().max() < 1e-4
    with pytest.raises(FaceEditError, match="square crop"):
        warp_crop(crops[0][:, :500], face, face)


def test_warp_is_fast_enough_for_an_instant_preview(crop):
    crops, _, face = crop
    target = _smile(face)
    warp_crop(crops[0], face, target)
    start = time.perf_counter()
    warp_crop(crops[0], face, target)
    assert time.perf_counter() - start < 2.0  # generous for a loaded 2-core CI box; bench/ reports real numbers
