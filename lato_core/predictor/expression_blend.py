"""Expression blends that keep each part's signature, and the neutral target.

Signatures: each expression (and the brow sliders) owns a few features of the face that make it what it
is, e.g. happy raises the mouth corners, angry lowers and draws the brows together, surprised drops the
jaw. Adding offsets linearly lets one part's motion erase another's (the surprised jaw drop pulls the
smile's corners down). After the sum, every signature feature is brought back to at least what its owner
alone would give at its amount; when two owners pull one feature opposite ways, the sum stands and a
warning says so. A brow slider outranks the expressions on the brows (an explicit request wins).

Neutral: the subject's current expression is estimated as a combination of the same offsets (every
expression, jaw drop, brow raise / lower, lid closure), fitted by ridge least squares to the part of the
lifted 3D shape that the identity fit does not explain, and removed with a strength 0..1. Points that no
expression moves (eye corners, nose bridge) are untouched, so the rigid identity is kept exactly.
"""
from __future__ import annotations

import numpy as np

from .face_model import EXPRESSIONS, MIRROR, FaceModel3D

# feature -> (left-side points, component: 0 outward / 1 up, description)
FEATURES = {
    "corners_up": ((54, 64), 1, "the mouth corners up or down"),
    "corners_out": ((54, 64), 0, "the mouth corners outward or inward"),
    "inner_brows_up": ((22, 23), 1, "the inner brows up or down"),
    "inner_brows_out": ((22, 23), 0, "the brows apart or together"),
    "outer_brows_up": ((24, 25, 26), 1, "the outer brows up or down"),
    "upper_lids_up": ((43, 44), 1, "the upper eyelids up or down"),
    "jaw_up": ((57, 8), 1, "the jaw"),
    "upper_lip_up": ((51, 52), 1, "the upper lip"),
}
# owner -> {feature: sign of its signature}
SIGNATURES = {
    "happy": {"corners_up": 1, "corners_out": 1},
    "sad": {"corners_up": -1, "inner_brows_up": 1},
    "angry": {"inner_brows_up": -1, "inner_brows_out": -1},
    "surprised": {"outer_brows_up": 1, "upper_lids_up": 1, "jaw_up": -1},
    "fearful": {"inner_brows_up": 1, "upper_lids_up": 1, "corners_out": 1},
    "disgusted": {"upper_lip_up": 1, "inner_brows_up": -1},
    "brow_raise": {"inner_brows_up": 1, "outer_brows_up": 1},
    "brow_lower": {"inner_brows_up": -1, "inner_brows_out": -1},
}
SLIDER_OWNERS = ("brow_raise", "brow_lower")
BROW_FEATURES = ("inner_brows_up", "inner_brows_out", "outer_brows_up")
MIN_SIGNATURE_IOD = 0.005  # smaller contributions are not worth keeping or warning about


def _points(feature: str) -> list[int]:
    left, _, _ = FEATURES[feature]
    return sorted({j for i in left for j in (i, int(MIRROR[i]))})


def feature_value(offsets: np.ndarray, feature: str, x_sign: np.ndarray) -> float:
    """Mean motion of the feature's points along its component (outward uses each side's sign), IOD."""
    idx, (_, comp, _) = _points(feature), FEATURES[feature]
    values = offsets[idx, comp] * (x_sign[idx] if comp == 0 else 1.0)
    return float(values.mean())


def _nudge(offsets: np.ndarray, feature: str, amount: float, x_sign: np.ndarray) -> None:
    idx, (_, comp, _) = _points(feature), FEATURES[feature]
    offsets[idx, comp] += amount * (x_sign[idx] if comp == 0 else 1.0)


def owner_offsets(model: FaceModel3D, owner: str, amount: float) -> np.ndarray:
    if owner == "brow_raise":
        return model.brow_offsets(amount)
    if owner == "brow_lower":
        return model.brow_offsets(-amount)
    return model.expression_offsets({owner: amount})


def keep_signatures(offsets: np.ndarray, owners: dict[str, float], model: FaceModel3D,
                    warnings: list[str] | None = None) -> np.ndarray:
    """offsets (68, 3) with every owner's signature features restored to at least its solo value."""
    x_sign = model._x_sign
    out = offsets.copy()
    solo = {o: owner_offsets(model, o, a) for o, a in owners.items() if a > 0 and o in SIGNATURES}
    for feature in FEATURES:
        pulls = {o: feature_value(solo[o], feature, x_sign) for o in solo if feature in SIGNATURES[o]}
        pulls = {o: v for o, v in pulls.items() if abs(v) >= MIN_SIGNATURE_IOD and np.sign(v) == SIGNATURES[o][feature]}
        if feature in BROW_FEATURES and any(o in SLIDER_OWNERS for o in pulls):
            pulls = {o: v for o, v in pulls.items() if o in SLIDER_OWNERS}
        up, down = [o for o, v in pulls.items() if v > 0], [o for o, v in pulls.items() if v < 0]
        if up and down:
            if warnings is not None:
                warnings.append(f"'{' and '.join(up)}' and '{' and '.join(down)}' move {FEATURES[feature][2]} "
                                "opposite ways; the two were blended (each partly undone).")
            continue
        if not pulls:
            continue
        target = sum(pulls.values())
        value = feature_value(out, feature, x_sign)
        if (target > 0 and value < target) or (target < 0 and value > target):
            _nudge(out, feature, target - value, x_sign)
    return out


def _lid_closure() -> np.ndarray:
    basis = np.zeros((68, 3))
    basis[[37, 38, 43, 44], 1] = -1.0
    basis[[40, 41, 46, 47], 1] = 0.3
    return basis


def expression_basis(model: FaceModel3D) -> np.ndarray:
    """(K, 68 * 3) offsets any expression is made of, for the neutral fit."""
    rows = [model.expression_offsets({e: 1.0}) for e in EXPRESSIONS if e != "neutral"]
    rows += [model.jaw_drop(), model.brow_offsets(1.0), model.brow_offsets(-1.0), 0.1 * _lid_closure()]
    for feature in FEATURES:  # the nudges keep_signatures may add
        nudge = np.zeros((68, 3))
        _nudge(nudge, feature, 0.1, model._x_sign)
        rows.append(nudge)
    return np.stack([r.ravel() for r in rows])


def neutralised(shape: np.ndarray, identity: np.ndarray, model: FaceModel3D, strength: float,
                ridge: float = 1e-4) -> np.ndarray:
    """shape (68, 3) with `strength` (0..1) of its fitted expression removed; identity is the shape the
    identity fit explains (mean + shape coefficients), so what is left over holds the expression."""
    strength = float(np.clip(strength, 0.0, 1.0))
    if strength == 0.0:
        return shape
    basis = expression_basis(model)
    residual = (shape - identity).ravel()
    coefficients = np.linalg.solve(basis @ basis.T + ridge * np.eye(len(basis)), basis @ residual)
    return shape - strength * (coefficients @ basis).reshape(68, 3)
