"""Geometric checks of a VLM's 68 canvas points against the source face's: scale, layout, point order and
the shape of every part. A reply that fails raises VlmOutputError with a reason code.

Frame: u is the eye axis (subject's right eye -> left eye, the picture's left -> right for a frontal face),
v its downward normal; distances are in source inter-ocular distances (IOD) or in each part's own width.
What must hold in any pose and expression the predictor can ask for (yaw up to ~70, pitch ~50 degrees,
eyes closed, mouth wide open):
- open contours run in order: jaw ear to ear, each brow and the lower nose along u, the nose bridge down v;
- eyes and lips: their corners in order along u, each upper point above its lower partner (a closed eye or
  mouth may meet, not swap), no part collapsed; an open eye is convex, an open contour never crosses
  itself and keeps the source's orientation (clockwise in the picture);
- the jaw bulges below the ear-to-ear chord (a straight jaw is not a face); brows above the eyes.
"""
from __future__ import annotations

import numpy as np

from ..errors import LandmarkFormatError


class VlmOutputError(LandmarkFormatError):
    """The reply cannot be used. `reason` is a short code (e.g. 'group_count'), the message says why."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"VLM landmark answer rejected ({reason}): {detail}")


# name, corner a, corner b, (upper, lower) partner pairs, convex when open
CLOSED_PARTS = (
    ("right eye", 36, 39, ((37, 41), (38, 40)), True),
    ("left eye", 42, 45, ((43, 47), (44, 46)), True),
    ("outer lips", 48, 54, ((49, 59), (50, 58), (51, 57), (52, 56), (53, 55)), False),
    ("inner lips", 60, 64, ((61, 67), (62, 66), (63, 65)), False),
)
CONTOUR_SLICES = {"right eye": (36, 42), "left eye": (42, 48), "outer lips": (48, 60), "inner lips": (60, 68)}
# name, first, end, axis ('u' or 'v')
ORDERED_CHAINS = (("jaw", 0, 17, "u"), ("right brow", 17, 22, "u"), ("left brow", 22, 27, "u"),
                  ("nose bridge", 27, 31, "v"), ("lower nose", 31, 36, "u"))


def frame(pts: np.ndarray):
    """Eye centres, inter-ocular distance, unit eye axis u (right eye -> left eye) and its downward normal v."""
    right, left = pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)
    iod = float(np.linalg.norm(left - right))
    u = (left - right) / max(iod, 1e-9)
    return right, left, iod, u, np.array([-u[1], u[0]])


def check_against_source(pts: np.ndarray, src: np.ndarray, limits) -> None:
    """Every check of the module docstring, on canvas points against the source's canvas points."""
    right_s, left_s, iod_s, u_s, v_s = frame(src)
    right, left, iod, u, v = frame(pts)
    for name, got, ref, (lo, hi), code in (
            ("inter-ocular distance", iod, iod_s, limits.iod_ratio, "scale_iod"),
            ("nose length (iBUG 27-33)", np.linalg.norm(pts[33] - pts[27]), np.linalg.norm(src[33] - src[27]),
             limits.nose_ratio, "scale_nose")):
        if ref >= 2.0 and not lo <= got / ref <= hi:
            raise VlmOutputError(code, f"{name} is {got / ref:.2f}x the source's ({got:.1f} vs {ref:.1f} px); "
                                 f"allowed {lo}..{hi}x.")
    if (left - right) @ u_s < -0.1 * iod_s:
        raise VlmOutputError("eyes_swapped", "the right and left eyes are swapped (mirrored face or point order).")
    eye_mid, eye_mid_s = (left + right) / 2, (left_s + right_s) / 2
    gap_s = (src[48:68].mean(axis=0) - eye_mid_s) @ v_s
    gap = (pts[48:68].mean(axis=0) - eye_mid) @ v_s
    if gap < limits.min_eye_mouth * gap_s:
        raise VlmOutputError("eyes_below_mouth", f"the mouth is not below the eyes (eye-to-mouth drop {gap:.1f} px, "
                             f"source {gap_s:.1f} px).")
    _check_chains(pts, u, v, limits.jaw_backstep_iod * iod_s)
    _check_jaw_shape(pts, src, u, v, u_s, v_s, limits)
    _check_brows_above_eyes(pts, v)
    for part in CLOSED_PARTS:
        _check_closed_part(pts, src, part, u, v, limits)
    shift = float(np.linalg.norm(pts.mean(axis=0) - src.mean(axis=0)))
    if shift > limits.max_centroid_shift_iod * iod_s:
        raise VlmOutputError("displaced", f"the face moved {shift:.0f} px ({shift / iod_s:.1f} inter-ocular distances) "
                             f"from the source; allowed {limits.max_centroid_shift_iod}.")


def _check_chains(pts, u, v, backstep: float) -> None:
    for name, start, end, axis in ORDERED_CHAINS:
        steps = np.diff(pts[start:end] @ (u if axis == "u" else v))
        back = np.flatnonzero(steps < -backstep)
        if back.size:
            k = start + int(back[0])
            code = "folded_jaw" if name == "jaw" else "point_order"
            direction = "ear-to-ear" if name == "jaw" else ("downward" if axis == "v" else "left-to-right")
            raise VlmOutputError(code, f"the {name} line runs backwards between points {k} and {k + 1} "
                                 f"({-steps[k - start]:.1f} px against the {direction} direction).")
    jaw = pts[0:17]
    for a in range(len(jaw) - 1):
        for b in range(a + 2, len(jaw) - 1):
            if _segments_cross(jaw[a], jaw[a + 1], jaw[b], jaw[b + 1]):
                raise VlmOutputError("folded_jaw", f"the jaw line crosses itself ({a}-{a + 1} and {b}-{b + 1}).")


def _jaw_bulge(pts, u, v) -> float:
    """How far the jaw reaches below its ear-to-ear chord (v direction), at its lowest point."""
    a, b = pts[0], pts[16]
    chord = b - a
    normal = np.array([-chord[1], chord[0]]) / max(np.linalg.norm(chord), 1e-9)
    normal = normal if normal @ v >= 0 else -normal
    return float(((pts[1:16] - a) @ normal).max())


def _check_jaw_shape(pts, src, u, v, u_s, v_s, limits) -> None:
    bulge, bulge_s = _jaw_bulge(pts, u, v), _jaw_bulge(src, u_s, v_s)
    if bulge_s > 2.0 and bulge < limits.min_jaw_bulge * bulge_s:
        raise VlmOutputError("flat_jaw", f"the jaw line is nearly straight: it reaches {bulge:.1f} px below the "
                             f"ear-to-ear line, the source's {bulge_s:.1f} px (at least {limits.min_jaw_bulge}x needed).")


def _check_brows_above_eyes(pts, v) -> None:
    for brow, eye, name in (((17, 22), (36, 42), "right"), ((22, 27), (42, 48), "left")):
        if pts[slice(*brow)].mean(axis=0) @ v >= pts[slice(*eye)].mean(axis=0) @ v:
            raise VlmOutputError("part_layout", f"the {name} brow is not above the {name} eye (point order or "
                                 "groups mixed up).")


def _signed_area(poly: np.ndarray) -> float:
    """Shoelace area; positive for clockwise in the picture (y down)."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _hull_area(poly: np.ndarray) -> float:
    pts = sorted(map(tuple, poly))
    cross = lambda o, a, b: (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])  # noqa: E731
    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return abs(_signed_area(np.array(lower[:-1] + upper[:-1]))) if len(pts) >= 3 else 0.0


def _check_closed_part(pts, src, part, u, v, limits) -> None:
    name, a, b, pairs, convex = part
    poly, poly_s = pts[slice(*CONTOUR_SLICES[name])], src[slice(*CONTOUR_SLICES[name])]
    width, width_s = float(np.linalg.norm(pts[b] - pts[a])), float(np.linalg.norm(src[b] - src[a]))
    if width < max(limits.min_part_width * width_s, 1.5):
        raise VlmOutputError("collapsed_part", f"the {name} is {width:.1f} px wide, the source's {width_s:.1f} px "
                             f"(at least {limits.min_part_width}x needed): collapsed or points misplaced.")
    if (pts[b] - pts[a]) @ u < 0.3 * width:
        raise VlmOutputError("point_order", f"the {name} corners (iBUG {a} and {b}) are in the wrong order.")
    tol = limits.lid_overlap * width
    axis = (pts[b] - pts[a]) / width
    along = (poly - pts[a]) @ axis
    first = CONTOUR_SLICES[name][0]
    upper_chain = along[: b - first + 1]                    # a, upper points, b
    lower_chain = np.r_[along[b - first:], along[0]]        # b, lower points, back to a
    step = (limits.eye_chain_backstep if convex else limits.chain_backstep) * width
    if np.diff(upper_chain).min() < -step or np.diff(lower_chain).max() > step:
        raise VlmOutputError("point_order", f"the {name} points do not run from corner to corner in order "
                             "(reversed or shuffled).")
    for upper, lower in pairs:
        if (pts[lower] - pts[upper]) @ v < -tol:
            raise VlmOutputError("point_order", f"{name} point {upper} lies below its lower partner {lower} "
                                 "(points reversed or shuffled).")
    area, area_s = _signed_area(poly), _signed_area(poly_s)
    flipped = convex and np.sign(area) != np.sign(area_s) and abs(area) >= limits.flip_area * width ** 2
    if abs(area_s) >= limits.open_area * width_s ** 2 and flipped:
        raise VlmOutputError("orientation", f"the {name} outline runs the other way round than the source's.")
    if abs(area) < limits.open_area * width ** 2 or abs(area_s) < limits.open_area * width_s ** 2:
        return  # a closed eye or mouth: order checked above, its outline may touch itself
    if np.sign(area) != np.sign(area_s):
        raise VlmOutputError("orientation", f"the {name} outline runs the other way round than the source's.")
    backstep = _worst_angular_backstep(poly, np.sign(area_s)) if convex else 0.0
    if backstep > limits.max_angle_backstep:
        raise VlmOutputError("contour_crossed", f"the {name} outline doubles back by {backstep:.0f} degrees around its "
                             f"centre (points shuffled or crossed; at most {limits.max_angle_backstep:.0f} allowed).")
    if convex and abs(area) < limits.eye_convexity * _hull_area(poly):
        raise VlmOutputError("not_convex", f"the {name} outline is dented ({abs(area) / _hull_area(poly):.2f} of its "
                             f"convex hull, at least {limits.eye_convexity} needed).")


def _worst_angular_backstep(poly: np.ndarray, orientation: float) -> float:
    """Largest step (degrees) by which the outline turns back around its centroid, walking in index order
    in the source's direction; 0 for any star-shaped outline traced in order."""
    d = poly - poly.mean(axis=0)
    angles = np.arctan2(d[:, 1], d[:, 0]) * orientation
    steps = np.degrees(np.angle(np.exp(1j * (np.roll(angles, -1) - angles))))
    return float(max(0.0, -steps.min()))


def _segments_cross(p1, p2, q1, q2) -> bool:
    side = lambda a, b, c: np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))  # noqa: E731
    return side(p1, p2, q1) * side(p1, p2, q2) < 0 and side(q1, q2, p1) * side(q1, q2, p2) < 0
