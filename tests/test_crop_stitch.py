"""Square crops on the 512 canvas and pasting them back."""
import numpy as np
import pytest
import torch

from lato_core.errors import FaceEditError
from lato_core.face.crop import _footprint, crop_faces, stitch_faces
from lato_core.face.detect import detect_faces


def _seam_free(transform, image_hw, band=2):
    """Boolean (H, W): the crop footprint minus a band at its border."""
    h, w = image_hw
    x0, y0, x1, y1 = _footprint(transform, w, h)
    keep = torch.zeros(h, w, dtype=torch.bool)
    keep[max(0, y0 + band):max(0, y1 - band), max(0, x0 + band):max(0, x1 - band)] = True
    return keep


def test_crop_is_512_square_and_landmarks_follow_the_pixels(astronaut, astronaut_face):
    crops, transforms, mapped = crop_faces(astronaut, [astronaut_face])
    assert crops.shape == (1, 512, 512, 3) and mapped[0].image_size == (512, 512)
    redetected = detect_faces(crops[0])[0]
    err = np.linalg.norm(redetected.points - mapped[0].points, axis=1)
    # The face is re-found where the transform put it (landmark noise scales with the 2x upsampling).
    assert np.median(err) < 3.0
    # FFHQ-like framing: eyes in the upper half, centred horizontally
    eyes = mapped[0].points[36:48].mean(axis=0)
    assert 200 < eyes[0] < 312 and 150 < eyes[1] < 256


@pytest.mark.parametrize("scale, align_roll", [(1.2, False), (2.0, False), (3.0, True)])
def test_unedited_crop_round_trips_within_one_level(astronaut, astronaut_face, scale, align_roll):
    crops, transforms, _ = crop_faces(astronaut, [astronaut_face], scale=scale, align_roll=align_roll)
    out = stitch_faces(astronaut, crops, transforms, feather=0.0)
    diff = (out - astronaut).abs()[0].mean(-1)
    inner = _seam_free(transforms[0], (512, 512))
    assert diff[inner].mean() < 1 / 255
    assert torch.equal(out[0][~_seam_free(transforms[0], (512, 512), band=-2)], astronaut[0][~_seam_free(transforms[0], (512, 512), band=-2)])


def test_keep_detail_round_trip_is_exact_even_for_a_downscaled_crop(astronaut, astronaut_face):
    # scale 6 makes the crop larger than 512 px in the photo, so the crop itself loses detail
    crops, transforms, _ = crop_faces(astronaut, [astronaut_face], size=128, scale=3.0)
    replaced = stitch_faces(astronaut, crops, transforms, feather=0.0)
    kept = stitch_faces(astronaut, crops, transforms, feather=0.0, mode="keep_detail")
    inner = _seam_free(transforms[0], (512, 512))
    assert (replaced - astronaut).abs()[0][inner].mean() > 3 / 255
    assert (kept - astronaut).abs().max() < 1e-6


def test_an_edit_lands_where_its_landmarks_say(astronaut, astronaut_face):
    crops, transforms, mapped = crop_faces(astronaut, [astronaut_face])
    edited = crops.clone()
    x, y = mapped[0].points[30].round().astype(int)  # nose tip in the crop
    edited[0, y - 6:y + 7, x - 6:x + 7] = torch.tensor([0.0, 1.0, 0.0])
    out = stitch_faces(astronaut, edited, transforms, feather=0.0)
    gx, gy = astronaut_face.points[30].round().astype(int)
    assert out[0, gy, gx].tolist() == pytest.approx([0.0, 1.0, 0.0], abs=0.05)


def test_mask_limits_the_paste_and_outside_stays_exact(astronaut, astronaut_face):
    crops, transforms, mapped = crop_faces(astronaut, [astronaut_face])
    mask = torch.zeros(1, 256, 256)  # other size than the crop: resized to it
    mask[:, 100:160, 100:160] = 1.0
    painted = torch.zeros_like(crops)
    out = stitch_faces(astronaut, painted, transforms, masks=mask, feather=0.0)
    changed = (out - astronaut).abs()[0].amax(-1) > 0.02
    x0, y0, x1, y1 = _footprint(transforms[0], 512, 512)
    ys, xs = torch.nonzero(changed, as_tuple=True)
    # The 60x60 crop-pixel square at 200..320 of a 512 crop maps to about 0.34 of the footprint width.
    span = (x1 - x0) * 60 / 256
    assert abs((xs.max() - xs.min()).item() - span) < 4
    assert changed.sum() < 1.2 * span * span


def test_colour_match_pulls_a_tinted_crop_back(astronaut, astronaut_face):
    crops, transforms, _ = crop_faces(astronaut, [astronaut_face])
    tinted = (crops * torch.tensor([1.0, 0.8, 0.6]) + 0.05).clamp(0, 1)
    inner = _seam_free(transforms[0], (512, 512))
    raw = stitch_faces(astronaut, tinted, transforms)
    fixed = stitch_faces(astronaut, tinted, transforms, colour_match=1.0)
    err_raw = (raw - astronaut)[0][inner].mean(0).abs().sum()
    err_fixed = (fixed - astronaut)[0][inner].mean(0).abs().sum()
    assert err_fixed < 0.2 * err_raw


def test_feather_makes_a_gradual_seam(astronaut, astronaut_face):
    crops, transforms, _ = crop_faces(astronaut, [astronaut_face])
    black = torch.zeros_like(astronaut)
    white = torch.ones_like(crops)  # pasting white onto black shows the paste weight itself
    hard = stitch_faces(black, white, transforms, feather=0.0)[0, ..., 0]
    soft = stitch_faces(black, white, transforms, feather=48.0)[0, ..., 0]
    x0, y0, x1, y1 = _footprint(transforms[0], 512, 512)
    row = hard[(y0 + y1) // 2, x0:x1]
    assert row[2:-2].min() > 0.99 and hard[:y0 - 1].max() == 0 and hard[y1 + 1:].max() == 0
    ramp = soft[(y0 + y1) // 2, x0:x1]
    width = 48 * (x1 - x0) / 512  # 48 crop pixels in photo pixels
    assert ramp[0] < 0.01 and ramp[int(width) + 2] > 0.99
    assert (ramp[1:int(width)] >= ramp[:int(width) - 1] - 1e-6).all()  # monotonic rise
    assert 0.3 < ramp[int(width / 2)] < 0.7


def test_mismatched_inputs_are_refused(astronaut, hopper, astronaut_face):
    crops, transforms, _ = crop_faces(astronaut, [astronaut_face])
    with pytest.raises(FaceEditError, match="cut from a 512x512 image, but the image to paste into is 512x600"):
        stitch_faces(hopper, crops, transforms)
    with pytest.raises(FaceEditError, match="2 crop\\(s\\) but 1 crop transform"):
        stitch_faces(astronaut, torch.cat([crops, crops]), transforms)
    with pytest.raises(FaceEditError, match="found on a 512x512 image, but this image is 512x600"):
        crop_faces(hopper, [astronaut_face])


def test_crop_near_the_border_marks_outside_landmarks_invisible(astronaut, astronaut_face):
    _, _, mapped = crop_faces(astronaut, [astronaut_face], scale=0.8)
    assert 0 < mapped[0].visibility.sum() < 68  # the jaw falls outside a tight crop
    assert (mapped[0].points >= -0.5).all() and (mapped[0].points <= 511.5).all()
