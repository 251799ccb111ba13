"""Evaluation cases: a CSV table of (photo, instruction), or a folder of the user's photos.

CSV columns: photo, instruction (required); id, yaw, pitch, roll (optional; degrees added to what the
instruction asks, like the predictor's sliders). photo is a path (relative to the CSV's folder) or
`sample:<name>` for a photo an installed package ships: sample:astronaut (scikit-image) and
sample:grace_hopper (matplotlib).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import photos
from ..errors import FaceEditError
from ..photos import PHOTO_SUFFIXES

DEFAULT_TABLE = Path(__file__).with_name("cases_default.csv")
CASES_FILE = "cases.csv"  # a folder holding this file is read as a table
# Run on every photo of a folder that has no cases.csv.
FOLDER_INSTRUCTIONS = (
    "turn the head 15 degrees left", "turn the head 30 degrees right", "smile slightly",
    "raise the chin 10 degrees", "look surprised",
)


@dataclass(frozen=True)
class Case:
    case_id: str
    photo: str
    instruction: str
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    base_dir: str = "."


def load_photo(case: Case) -> np.ndarray:
    """(H, W, 3) uint8 RGB of the case's photo."""
    try:
        return photos.load_photo(case.photo, case.base_dir)
    except FaceEditError as error:
        raise FaceEditError(f"Case '{case.case_id}': {error}") from None


def _number(row: dict, key: str, where: str) -> float:
    text = (row.get(key) or "").strip()
    try:
        return float(text) if text else 0.0
    except ValueError:
        raise FaceEditError(f"{where}: column '{key}' must be a number of degrees, got '{text}'.") from None


def read_table(path: str | Path) -> list[Case]:
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: tables saved by spreadsheet programs
        reader = csv.DictReader(handle)
        missing = {"photo", "instruction"} - set(reader.fieldnames or [])
        if missing:
            raise FaceEditError(f"Case table '{path}' lacks the column(s) {sorted(missing)}; it needs a header "
                                "'photo,instruction' (optional id, yaw, pitch, roll).")
        cases = []
        for n, row in enumerate(reader, start=2):
            where = f"{path.name} line {n}"
            photo = (row.get("photo") or "").strip()
            if not photo:
                raise FaceEditError(f"{where}: the photo is empty.")
            cases.append(Case((row.get("id") or "").strip() or f"case{len(cases) + 1:03d}", photo,
                              (row.get("instruction") or "").strip(), _number(row, "yaw", where),
                              _number(row, "pitch", where), _number(row, "roll", where), str(path.parent)))
    if not cases:
        raise FaceEditError(f"Case table '{path}' has no rows.")
    return cases


def folder_cases(folder: str | Path) -> list[Case]:
    """Every photo in the folder times FOLDER_INSTRUCTIONS (or the folder's cases.csv when present)."""
    folder = Path(folder)
    if (folder / CASES_FILE).is_file():
        return read_table(folder / CASES_FILE)
    found = photos.photos_in(folder)
    if not found:
        raise FaceEditError(f"No photos ({', '.join(PHOTO_SUFFIXES)}) and no {CASES_FILE} in '{folder}'.")
    return [Case(f"{p.stem}_{i + 1}", p.name, text, base_dir=str(folder))
            for p in found for i, text in enumerate(FOLDER_INSTRUCTIONS)]


def load_cases(source: str | Path | None = None) -> list[Case]:
    """None or 'default': the shipped table; a .csv file; or a folder."""
    if source is None or str(source) == "default":
        return read_table(DEFAULT_TABLE)
    path = Path(source)
    if path.is_dir():
        return folder_cases(path)
    if path.is_file():
        return read_table(path)
    raise FaceEditError(f"Cases '{source}' is neither a CSV file nor a folder of photos.")
