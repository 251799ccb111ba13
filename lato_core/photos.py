"""Loading photos by path or by `sample:<name>`, shared by evaluation and tokenizer training.

`sample:astronaut` (scikit-image) and `sample:grace_hopper` (matplotlib) are photos installed packages ship.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .errors import FaceEditError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def sample_photo(name: str) -> np.ndarray:
    if name == "astronaut":
        try:
            from skimage import data
        except ImportError:
            raise FaceEditError("sample:astronaut comes with scikit-image: pip install scikit-image") from None
        return data.astronaut()
    if name in ("grace_hopper", "hopper"):
        try:
            import matplotlib.cbook as cbook
        except ImportError:
            raise FaceEditError("sample:grace_hopper comes with matplotlib: pip install matplotlib") from None
        return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    raise FaceEditError(f"Unknown sample photo 'sample:{name}'; use sample:astronaut or sample:grace_hopper.")


def load_photo(photo: str, base_dir: str | Path = ".") -> np.ndarray:
    """(H, W, 3) uint8 RGB of `sample:<name>` or a path (relative paths from base_dir)."""
    if photo.startswith("sample:"):
        return sample_photo(photo.split(":", 1)[1].strip())
    path = Path(photo)
    path = path if path.is_absolute() else Path(base_dir) / path
    if not path.is_file():
        raise FaceEditError(f"Photo '{path}' not found.")
    return np.asarray(Image.open(path).convert("RGB"))


def photos_in(folder: str | Path) -> list[Path]:
    """The photo files of a folder, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
