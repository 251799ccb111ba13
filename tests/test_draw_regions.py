"""Drawing in the release's colours and region masks by name."""
import numpy as np
import pytest
import torch

from lato_core.errors import FaceEditError
from lato_core.face.batch import draw_batch, mask_batch
from lato_core.face.crop import crop_faces
from lato_core.face.draw import AMBER, BLUE, GREEN, RED, WHITE, draw_landmarks
from lato_core.face.regions import REGIONS, parse_region_names, region_mask


@pytest.fixture(scope="module")
def crop_face(astronaut, astronaut_face):
    return crop_faces(astronaut, [astronaut_face])[2][0]


@pytest.mark.parametrize("index, colour", [(0, WHITE), (8, WHITE), (19, AMBER), (24, AMBER), (28, GREEN), (33, GREEN),
                                           (37, RED), (44, RED), (51, BLUE), (62, BLUE)])
def test_points_are_drawn_in_the_release_colours(crop_face, index, colour):
    picture = draw_landmarks([crop_face], lines=False)
    x, y = crop_face.points[index].round().astype(int)
    assert tuple(picture[y, x]) == colour


def test_black_canvas_is_black_away_from_the_points_and_dots_have_radius_4(crop_face):
    picture = draw_landmarks([crop_face], lines=False)
    assert picture.shape == (512, 512, 3) and picture[:40, :40].max() == 0
    x, y = crop_face.points[8].round().astype(int)
    assert picture[y, x + 3].tolist() == list(WHITE) and picture[y, x + 6].max() == 0


def test_lines_close_the_eye_outline_and_numbers_add_text(crop_face):
    plain = draw_landmarks([crop_face], lines=False)
    lines = draw_landmarks([crop_face], lines=True)
    mid = ((crop_face.points[41] + crop_face.points[36]) / 2).round().astype(int)  # the closing segment 41 -> 36
    assert tuple(lines[mid[1], mid[0]]) == RED and tuple(plain[mid[1], mid[0]]) != RED
    numbered = draw_landmarks([crop_face], lines=False, numbers=True)
    assert (numbered != plain).any(axis=-1).sum() > 500


def test_drawing_over_a_photo_keeps_the_photo_elsewhere(astronaut, astronaut_face):
    over = draw_batch([astronaut_face], astronaut)
    assert over.shape == astronaut.shape
    assert torch.allclose(over[0, 300:, :], astronaut[0, 300:, :], atol=1 / 255 + 1e-6)


def test_hidden_points_are_drawn_as_rings(crop_face):
    vis = np.ones(68)
    vis[8] = 0
    picture = draw_landmarks([crop_face.with_points(crop_face.points, visibility=vis)], lines=False)
    x, y = crop_face.points[8].round().astype(int)
    assert picture[y, x].max() == 0 and any(tuple(picture[y, x + d]) == WHITE for d in (3, 4, 5))


def _inside(mask, point):
    x, y = np.round(point).astype(int)
    return mask[y, x] > 0.5


def test_each_region_covers_its_feature_and_not_the_others(crop_face):
    p = crop_face.points
    right_eye, left_eye = crop_face.eye_centres()
    checks = {
        "right_eye": (right_eye, [left_eye, p[30]]),
        "left_eye": (left_eye, [right_eye, p[30]]),
        "right_brow": (p[19] + (p[37] - p[19]) * 0.3, [left_eye, p[24]]),
        "left_brow": (p[24] + (p[44] - p[24]) * 0.3, [right_eye, p[19]]),
        "nose": (p[30], [right_eye, p[51]]),
        "upper_lip": ((p[51] + p[62]) / 2, [p[30], (p[57] + p[66]) / 2]),
        "lower_lip": ((p[57] + p[66]) / 2, [(p[51] + p[62]) / 2, p[8]]),
        "face_oval": (p[30], [p[0] - [30, 0], p[16] + [30, 0]]),
        "mouth": ((p[62] + p[66]) / 2, [p[30]]),
    }
    for name, (inside, outside) in checks.items():
        mask = region_mask([crop_face], [name])
        assert _inside(mask, inside), name
        for point in outside:
            assert not _inside(mask, point), (name, point)


def test_lips_leave_the_open_mouth_out(crop_face):
    lips = region_mask([crop_face], parse_region_names("lips"))
    mouth = region_mask([crop_face], ["mouth"])
    inner = region_mask([crop_face], ["inner_mouth"])
    assert lips.sum() + inner.sum() == pytest.approx(mouth.sum(), rel=0.1)
    assert (lips * inner).sum() < 0.1 * inner.sum()


def test_grow_shrink_hull_and_feather(crop_face):
    base = region_mask([crop_face], ["right_eye"])
    grown = region_mask([crop_face], ["right_eye"], grow=5)
    shrunk = region_mask([crop_face], ["right_eye"], grow=-2)
    hull = region_mask([crop_face], ["upper_lip"], hull=True)
    lip = region_mask([crop_face], ["upper_lip"])
    soft = region_mask([crop_face], ["right_eye"], feather=6)
    assert shrunk.sum() < base.sum() < grown.sum()
    assert ((grown - base) >= 0).all() and ((base - shrunk) >= 0).all()
    perimeter = base.sum() ** 0.5 * 4  # about; the grown ring is ~ perimeter * 5
    assert 2.5 * perimeter < grown.sum() - base.sum() < 8 * perimeter
    assert (hull >= lip).all() and hull.sum() > lip.sum()
    edge = (soft > 0.05) & (soft < 0.95)
    assert edge.sum() > 100 and soft.max() == pytest.approx(1.0, abs=0.02) and set(np.unique(base)) == {0.0, 1.0}


def test_region_names_are_parsed_forgivingly_and_refused_clearly():
    assert parse_region_names("Left Eye; right-eye + lips") == ["left_eye", "right_eye", "upper_lip", "lower_lip"]
    assert parse_region_names("brows") == ["left_brow", "right_brow"]
    with pytest.raises(FaceEditError, match="Unknown region 'ears'. Known regions: face_oval"):
        parse_region_names("eyes, ears")
    with pytest.raises(FaceEditError, match="Name at least one region"):
        parse_region_names(" , ")
    assert set(REGIONS) >= {"face_oval", "left_brow", "right_brow", "left_eye", "right_eye", "nose", "upper_lip",
                            "lower_lip", "inner_mouth"}


def test_mask_batch_is_a_comfy_mask_with_one_plane_per_image(astronaut_face):
    other = astronaut_face.with_points(astronaut_face.points, image_index=2)
    masks = mask_batch([astronaut_face, other], "nose")
    assert masks.shape == (3, 512, 512) and masks.dtype == torch.float32
    assert masks[1].sum() == 0 and torch.equal(masks[0], masks[2]) and masks[0].max() == 1.0


def test_warnings_are_printed_on_the_preview_the_frontend_shows():
    from lato_core.face.batch import caption_batch
    from lato_core.face.landmarks import FaceLandmarks
    from lato_core.predictor.predict import report_lines

    pictures = torch.full((2, 128, 160, 3), 0.5)
    faces = [FaceLandmarks(np.full((68, 2), 50.0), (160, 128), image_index=1)]
    notes = [report_lines({"used": "parametric", "reason": "the VLM reply failed a check",
                           "warnings": ["yaw 720 capped at 90"]})]
    assert notes[0] == ["parametric used: the VLM reply failed a check", "yaw 720 capped at 90"]
    shown = caption_batch(pictures, faces, notes)
    assert torch.equal(shown[0], pictures[0])                 # image 0 has no face: unchanged
    band = shown[1, -30:]
    assert (band == 0).float().mean() > 0.5 and (band[..., 0] > 0.8).any()   # dark band with yellow text
    assert torch.allclose(shown[1, :60], pictures[1, :60], atol=1 / 255)   # the picture above it kept
