"""Run a table of (photo, instruction) cases through an edit engine and measure every edit.

Per case: detect the largest face, crop it to 512, predict the target landmarks (parametric predictor,
instruction + the case's yaw/pitch/roll), edit the crop with the engine, round both crops to 8 bits (as
saved) and measure them with lato_core.metrics.measure_edit. Writes into the output folder:
results.csv, results.md, landmark_error_vs_yaw.png, and per case images/<id>_source.png,
images/<id>_edit.png and cases/<id>.json (source and target landmarks, predictor report) so that every
number can be recomputed from the files.

Engines are callables (crop (H, W, 3) float 0..1, source landmarks, target landmarks, instruction) ->
edited crop (H, W, 3). "warp" (the landmark warp preview) is built in; "lato" is registered from the
model files by lato_engine.make_lato_engine (the CLI does this for --engine lato --lato-models DIR).
"""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..errors import FaceEditError, NoFaceError
from ..face.crop import crop_faces
from ..face.detect import DetectOptions, detect_faces
from ..face.landmarks import FaceLandmarks
from ..metrics import ArcFaceModel, measure_edit
from ..predictor.predict import Controls, predict_target
from ..predictor.thin_plate_preview import warp_crop
from .cases import Case, load_photo

Engine = Callable[[torch.Tensor, FaceLandmarks, FaceLandmarks, str], torch.Tensor]
ENGINE_NAMES = ("warp", "lato")
COLUMNS = ("id", "photo", "instruction", "engine", "requested_yaw", "requested_pitch", "requested_roll",
           "landmark_error", "landmark_error_euclidean", "landmark_points", "face_found", "landmark_detector",
           "identity_distance", "same_person", "arcface_cosine", "ssim", "expected_amplitude", "actual_amplitude",
           "rectified_identity", "edit_seconds", "case_seconds", "error")


def warp_engine(crop, source, target, instruction):
    return warp_crop(crop, source, target)


_ENGINES: dict[str, Engine] = {"warp": warp_engine}


def register_engine(name: str, engine: Engine) -> None:
    """Make an engine available to the runner, e.g. register_engine("lato", lato_edit)."""
    _ENGINES[name] = engine


def get_engine(name: str) -> Engine:
    if name in _ENGINES:
        return _ENGINES[name]
    if name == "lato":
        raise FaceEditError("The LaTo engine needs its model files: run with --engine lato --lato-models DIR, or "
                            "register_engine('lato', make_lato_engine(...)) from lato_core.evaluation.lato_engine.")
    raise FaceEditError(f"Unknown engine '{name}'; choose one of {', '.join(sorted(set(_ENGINES) | {'lato'}))}.")


def to_uint8(image) -> np.ndarray:
    return (torch.as_tensor(image).float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


class _PhotoCache:
    """Each photo is loaded, detected and cropped once: (crop uint8, crop landmarks)."""

    def __init__(self, options: DetectOptions):
        self.options, self.items = options, {}

    def get(self, case: Case):
        key = (case.base_dir, case.photo)
        if key not in self.items:
            rgb = load_photo(case)
            faces = detect_faces(rgb, self.options)
            if not faces:
                raise NoFaceError(f"no face found in '{case.photo}'")
            face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
            crops, _, mapped = crop_faces(torch.from_numpy(rgb.copy()).float()[None] / 255.0, [face])
            self.items[key] = (to_uint8(crops[0]), mapped[0])
        return self.items[key]


def _exact(face: FaceLandmarks) -> dict:
    """Landmark JSON at full precision (to_dict rounds to 0.001 px), so numbers can be recomputed exactly."""
    return {**face.to_dict(), "points": face.points.tolist(), "visibility": face.visibility.tolist()}


def run_case(case: Case, engine_name: str, out_dir: Path, cache: _PhotoCache,
             arcface: ArcFaceModel | None = None) -> dict:
    start = time.perf_counter()
    row = {"id": case.case_id, "photo": case.photo, "instruction": case.instruction, "engine": engine_name}
    source, face = cache.get(case)
    target, report = predict_target(face, case.instruction, Controls(case.yaw, case.pitch, case.roll))
    params = report["params"]
    row.update(requested_yaw=params["yaw"], requested_pitch=params["pitch"], requested_roll=params["roll"])
    crop = torch.from_numpy(source).float() / 255.0
    t0 = time.perf_counter()
    edit = to_uint8(get_engine(engine_name)(crop, face, target, case.instruction))
    row["edit_seconds"] = time.perf_counter() - t0
    if edit.shape != source.shape:
        raise FaceEditError(f"engine '{engine_name}' returned shape {edit.shape}; expected the crop's {source.shape}")
    metrics, _ = measure_edit(source, edit, target, face, params, arcface, cache.options)
    row.update({key: metrics[key] for key in COLUMNS if key in metrics})
    Image.fromarray(source).save(out_dir / "images" / f"{case.case_id}_source.png")
    Image.fromarray(edit).save(out_dir / "images" / f"{case.case_id}_edit.png")
    record = {"case": case.__dict__, "source": _exact(face), "target": _exact(target), "report": report,
              "metrics": metrics}
    (out_dir / "cases" / f"{case.case_id}.json").write_text(json.dumps(record, indent=1, default=str))
    row["case_seconds"] = time.perf_counter() - start
    return row


def run_evaluation(cases: list[Case], engine: str = "warp", out_dir: str | Path = "outputs/evaluation",
                   arcface_path: str | None = None, detector: str = "dlib_hog", progress: bool = True) -> list[dict]:
    """Every case through `engine`; a failing case is recorded with its error and the run goes on."""
    get_engine(engine)  # fail before any work when the engine is missing
    out = Path(out_dir)
    for sub in ("images", "cases"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    arcface = ArcFaceModel(arcface_path) if arcface_path else None
    cache = _PhotoCache(DetectOptions(backend=detector))
    from tqdm import tqdm

    rows = []
    bar = tqdm(cases, desc=f"evaluating {engine}", unit="case", disable=not progress)
    for case in bar:
        try:
            rows.append(run_case(case, engine, out, cache, arcface))
            if rows[-1].get("landmark_error") is not None:
                bar.set_postfix(landmark_error=f"{rows[-1]['landmark_error']:.2f}px")
        except FaceEditError as exc:
            rows.append({"id": case.case_id, "photo": case.photo, "instruction": case.instruction,
                         "engine": engine, "error": str(exc)})
    write_csv(rows, out / "results.csv")
    write_markdown(rows, out / "results.md", engine)
    plot_error_vs_yaw(rows, out / "landmark_error_vs_yaw.png", engine)
    return rows


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_cell(row.get(key)) for key in COLUMNS])


MD_COLUMNS = (("id", "case", None), ("requested_yaw", "yaw", 0), ("landmark_error", "landmark error (px)", 2),
              ("identity_distance", "dlib distance", 3), ("arcface_cosine", "ArcFace", 3), ("ssim", "SSIM", 3),
              ("expected_amplitude", "phi_ins", 3), ("actual_amplitude", "phi_real", 3),
              ("rectified_identity", "rectified IP", 3), ("edit_seconds", "edit s", 3), ("case_seconds", "case s", 2))


def _md(value, digits) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if digits is not None else str(value)


def write_markdown(rows: list[dict], path: Path, engine: str) -> None:
    lines = [f"# Edit evaluation, engine `{engine}`", "",
             "Landmark error: mean |dx|+|dy| per visible point (512 canvas) between the landmarks detected on "
             "the edit and the target; dlib distance < 0.6 means the same person; rectified IP is Eq. 7.", "",
             "| " + " | ".join(title for _, title, _ in MD_COLUMNS) + " | instruction |",
             "|" + "---|" * (len(MD_COLUMNS) + 1)]
    for row in rows:
        cells = [_md(row.get(key), digits) for key, _, digits in MD_COLUMNS]
        note = f" (error: {row['error']})" if row.get("error") else ""
        lines.append("| " + " | ".join(cells) + f" | {row.get('instruction', '')}{note} |")
    means = []
    for key, _, digits in MD_COLUMNS[1:]:
        values = [row[key] for row in rows if isinstance(row.get(key), (int, float)) and key != "requested_yaw"]
        means.append(_md(float(np.mean(values)), digits) if values else "-")
    lines.append("| **mean** | " + " | ".join(means) + " | |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot_error_vs_yaw(rows: list[dict], path: Path, engine: str) -> None:
    try:
        from matplotlib.figure import Figure  # no pyplot: leaves the host's backend alone
    except ImportError:
        raise FaceEditError("results.csv and results.md are written; the plot needs matplotlib: "
                            "pip install matplotlib") from None
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    for photo in sorted({row["photo"] for row in rows}):
        pts = [(row["requested_yaw"], row["landmark_error"]) for row in rows
               if row["photo"] == photo and row.get("landmark_error") is not None]
        if pts:
            ax.scatter(*zip(*pts), label=photo, s=30)
    ax.set_xlabel("requested yaw (degrees, + = subject's left)")
    ax.set_ylabel("landmark error (px, 512 canvas)")
    ax.set_title(f"Landmark error against requested yaw, engine {engine}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
