"""One call for every edit metric, and a preview picture with the numbers on it."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..face.detect import DetectOptions
from ..face.image import as_rgb_uint8
from ..face.landmarks import FaceLandmarks
from .identity import ArcFaceModel, DLIB_SAME_PERSON, dlib_similarity, identity_distance
from .image import ssim
from .landmarks import detect_matching_face, measure_landmark_error
from .rectified import (actual_amplitude, amplitude_ceiling, expected_amplitude, params_from_landmarks,
                        rectified_identity)

TARGET_COLOUR, DETECTED_COLOUR = (0, 255, 0), (255, 40, 40)


def _single(image):
    return image[0] if getattr(image, "ndim", 3) == 4 else image


def measure_edit(source, edited, target: FaceLandmarks, source_face: FaceLandmarks | None = None,
                 params: dict | None = None, arcface: ArcFaceModel | None = None,
                 options: DetectOptions | None = None) -> tuple[dict, FaceLandmarks | None]:
    """Metrics of one edit of a face crop: (numbers, landmarks detected on the edit or None).

    source, edited: (H, W, C) crops of one size; target: the landmarks asked for, on that crop;
    source_face: the source crop's landmarks (detected if None); params: the predictor's parameters
    (a report's "params"), else the pose change between source_face and target is used.
    """
    source, edited = _single(source), _single(edited)
    lm = measure_landmark_error(edited, target, options)
    if source_face is None:
        source_face = detect_matching_face(source, target, options) or target
    edited_face = lm.detected if lm.detected is not None else target
    distance = identity_distance(source, edited, source_face, edited_face)
    similarity = ssim(source, edited)
    amplitude_from = "predictor params" if params is not None else "pose change of the landmarks"
    params = params if params is not None else params_from_landmarks(source_face, target)
    expected = expected_amplitude(params, amplitude_ceiling(source))
    actual = actual_amplitude(similarity)
    cosine = arcface.cosine(source, edited, source_face, edited_face) if arcface is not None else None
    identity = cosine if cosine is not None else dlib_similarity(distance)
    metrics = {
        **lm.to_dict(),
        "identity_distance": distance,
        "same_person": bool(distance < DLIB_SAME_PERSON),
        "identity_similarity": identity,
        "identity_source": "arcface cosine" if cosine is not None else "dlib 1 - d/1.2",
        "arcface_cosine": cosine,
        "ssim": similarity,
        "expected_amplitude": expected,
        "actual_amplitude": actual,
        "amplitude_from": amplitude_from,
        "rectified_identity": rectified_identity(identity, expected, actual),
        "identity_face_in_edit": "detected" if lm.detected is not None else "target landmarks",
    }
    return metrics, lm.detected


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def report_lines(metrics: dict) -> list[str]:
    if metrics.get("landmark_error") is None:
        landmark = "landmark error: no face found on the edit"
    else:
        landmark = (f"landmark error {_fmt(metrics['landmark_error'], 2)} px (mean |dx|+|dy|, 512 canvas; "
                    f"euclidean {_fmt(metrics['landmark_error_euclidean'], 2)}; {metrics['landmark_points']} points)")
    verdict = "same person" if metrics["same_person"] else "different person"
    lines = [landmark,
             f"identity: dlib distance {_fmt(metrics['identity_distance'])} ({verdict}, threshold {DLIB_SAME_PERSON})"
             + (f"; ArcFace cosine {_fmt(metrics['arcface_cosine'])}"
                if metrics.get("arcface_cosine") is not None else ""),
             f"SSIM {_fmt(metrics['ssim'])}; edit amplitude expected {_fmt(metrics['expected_amplitude'])}, "
             f"actual {_fmt(metrics['actual_amplitude'])} ({metrics['amplitude_from']})",
             f"rectified identity (Eq. 7) {_fmt(metrics['rectified_identity'])} from {metrics['identity_source']} "
             f"{_fmt(metrics['identity_similarity'])}"]
    return lines


def _mark(pen: ImageDraw.ImageDraw, face: FaceLandmarks, colour, radius: float, ring: bool, dx: float = 0.0):
    for (x, y), v in zip(face.points, face.visibility):
        box = (x + dx - radius, y - radius, x + dx + radius, y + radius)
        pen.ellipse(box, outline=colour, width=2) if ring or v <= 0 else pen.ellipse(box, fill=colour)


def render_report(source, edited, metrics: dict, target: FaceLandmarks | None = None,
                  detected: FaceLandmarks | None = None) -> np.ndarray:
    """(H', W', 3) uint8: source | edit (target rings green, detected dots red), the numbers below."""
    a, b = as_rgb_uint8(_single(source)), as_rgb_uint8(_single(edited))
    h, w = b.shape[:2]
    scale = max(h, w) / 512
    font = ImageFont.load_default(size=max(10, round(15 * scale)))
    lines = report_lines(metrics) + ["left: source; right: edit with target points (green rings) and the points "
                                     "detected on it (red dots)"]
    line_h = round(20 * scale)
    canvas = Image.new("RGB", (2 * w, h + line_h * (len(lines) + 1)), (24, 24, 24))
    canvas.paste(Image.fromarray(a).resize((w, h)), (0, 0))
    canvas.paste(Image.fromarray(b), (w, 0))
    pen = ImageDraw.Draw(canvas)
    r = max(2.0, 3.5 * scale)
    if target is not None and detected is not None:
        for p, q in zip(target.points, detected.points):
            pen.line([(p[0] + w, p[1]), (q[0] + w, q[1])], fill=(255, 255, 0), width=1)
    if target is not None:
        _mark(pen, target, TARGET_COLOUR, r + 1, True, dx=w)
    if detected is not None:
        _mark(pen, detected, DETECTED_COLOUR, r * 0.7, False, dx=w)
    for i, text in enumerate(lines):
        pen.text((round(8 * scale), h + round(line_h * (0.5 + i))), text, fill=(235, 235, 235), font=font)
    return np.asarray(canvas)
