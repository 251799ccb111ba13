import numpy as np
import pytest
from PIL import Image

from lato_core.errors import FaceEditError
from lato_core.photos import load_photo, photos_in


def test_photos_in_lists_only_photos_and_load_photo_reads_them(tmp_path):
    Image.fromarray(np.full((8, 6, 3), 7, np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.JPG")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in photos_in(tmp_path)] == ["a.JPG", "b.png"]
    rgb = load_photo("b.png", tmp_path)
    assert rgb.shape == (8, 6, 3) and rgb.dtype == np.uint8 and int(rgb[0, 0, 0]) == 7
    assert load_photo("a.JPG", tmp_path).shape == (4, 4, 3)  # grey becomes RGB


def test_load_photo_names_the_missing_file_and_unknown_samples(tmp_path):
    with pytest.raises(FaceEditError, match="missing.jpg"):
        load_photo("missing.jpg", tmp_path)
    with pytest.raises(FaceEditError, match="sample:nobody"):
        load_photo("sample:nobody")
