"""Target landmarks for one face: instruction + sliders, through the parametric predictor, the VLM, or
the VLM with the parametric predictor as fallback. Sliders always compose on top of the result."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import FaceEditError
from ..face.landmarks import FaceLandmarks
from .geometry import predict_landmarks
from .parse import EditParams, parse_instruction
from .vlm import VlmPredictor, predict_with_fallback

MODES = ("parametric", "vlm", "vlm_with_fallback")


@dataclass
class Controls:
    """Explicit sliders: degrees for the angles, 1 = 'normally' for expressions, -1..1 for the rest."""
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    expressions: dict[str, float] = field(default_factory=dict)
    mouth_open: float = 0.0
    blink: float = 0.0
    brow_raise: float = 0.0

    def is_idle(self) -> bool:
        return not any([self.yaw, self.pitch, self.roll, self.mouth_open, self.blink, self.brow_raise,
                        *self.expressions.values()])


def _params_from(controls: Controls, base: EditParams | None = None) -> EditParams:
    return (base or EditParams()).with_controls(**vars(controls))  # the sliders' names are with_controls' arguments


def predict_target(face: FaceLandmarks, instruction: str = "", controls: Controls | None = None,
                   mode: str = "parametric", vlm: VlmPredictor | None = None, image=None,
                   keep_centre: bool = False) -> tuple[FaceLandmarks, dict]:
    """(target landmarks on the face's canvas, report). image (H, W, 3 uint8) is the face crop, for the VLM."""
    controls = controls or Controls()
    if mode not in MODES:
        raise FaceEditError(f"Unknown predictor mode '{mode}'; choose one of {', '.join(MODES)}.")
    if mode == "parametric":
        params = _params_from(controls, parse_instruction(instruction))
        warnings = list(params.warnings)
        target = predict_landmarks(face, params, keep_centre=keep_centre, warnings=warnings)
        return target, {"used": "parametric", "params": _describe(params), "warnings": warnings}
    if vlm is None and mode == "vlm":
        raise FaceEditError("Mode 'vlm' needs a loaded VLM landmark predictor: connect the VLM loader, or use "
                            "mode 'parametric' or 'vlm_with_fallback'.")
    if image is None:
        raise FaceEditError("The VLM predictor needs the face crop image: connect the crops to 'image'.")
    image = np.asarray(image)
    if mode == "vlm":
        raw, target = vlm.predict(image, instruction, face)
        report = {"used": "vlm", "reason": "strict mode", "raw": raw}
    else:
        def parametric() -> FaceLandmarks:
            return predict_landmarks(face, parse_instruction(instruction), keep_centre=keep_centre)

        target, report = predict_with_fallback(vlm, image, instruction, face, parametric)
    if not controls.is_idle():
        report["warnings"] = report.get("warnings", [])
        target = predict_landmarks(target, _params_from(controls), keep_centre=keep_centre, warnings=report["warnings"])
    return target, report


def _describe(params: EditParams) -> dict:
    out = asdict(params)
    out["expressions"] = {k: round(v, 3) for k, v in params.expressions.items() if v}
    return out


def predict_targets(faces: list[FaceLandmarks], instruction: str = "", controls: Controls | None = None,
                    mode: str = "parametric", vlm: VlmPredictor | None = None, images=None,
                    keep_centre: bool = False) -> tuple[list[FaceLandmarks], list[dict]]:
    """predict_target for every face; images (indexed by the faces' image_index) are their crops."""
    from ..face.image import as_rgb_uint8

    targets, reports = [], []
    if images is not None:
        beyond = sorted({f.image_index for f in faces if not 0 <= f.image_index < images.shape[0]})
        if beyond:
            raise FaceEditError(f"Landmarks refer to crop(s) {beyond[:5]}, but {images.shape[0]} crop(s) are connected. "
                                "Connect the crops and crop_landmarks of the same Face Crop node.")
    for face in faces:
        image = as_rgb_uint8(images[face.image_index]) if images is not None else None
        target, report = predict_target(face, instruction, controls, mode, vlm, image, keep_centre)
        targets.append(target)
        reports.append(report)
    return targets, reports


def report_lines(report: dict) -> list[str]:
    """What a user must see from one face's report: its warnings and why a VLM answer was not used."""
    lines = [str(w) for w in report.get("warnings", [])]
    if report.get("reason") and report.get("used") != "vlm":   # the VLM's answer was not taken: say why
        lines.insert(0, f"{report.get('used', '')} used: {report['reason']}")
    return lines
