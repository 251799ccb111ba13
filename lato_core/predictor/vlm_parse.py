"""Strict reader of a VLM landmark predictor's reply: 68 points on the canvas, checked against the source face.

Accepted grammar (anything else raises VlmOutputError with a reason code):
- Where: inside the LAST <answer>...</answer> (an unclosed <answer> runs to the end). Without an <answer>
  tag, the reasoning (<think>...</think>, or an unclosed <think> to the end) is dropped and the rest is
  searched (noted). Tags are case-insensitive.
- Which JSON: the last ``` fenced block (any or no language tag; unclosed runs to the end); without a fence,
  the last top-level {...} or [[...]] that parses. Trailing commas are tolerated (noted); comments,
  single quotes are not; NaN, Infinity and huge numbers are refused.
- Shapes: {"JAW/BROWS": 27, "NOSE": 9, "EYES": 12, "MOUTH": 20 points} in any key order; keys are matched
  case- and punctuation-insensitively by word (jaw+brow, jaw alone = 17, brow alone = 10, nose, eye,
  mouth or lip); or {"points"|"landmarks": 68 points}; or a bare list of 68 points. Unknown keys are refused.
- Bounds: at most MAX_REPLY_CHARS characters and MAX_JSON_DEPTH levels of brackets, found in one linear
  scan (json_limits); a key given twice is refused (duplicate_key). Geometry: see vlm_checks.
- Point: [x, y], two JSON numbers. Integers expected; other finite numbers accepted (noted). Strings such
  as "12,34", objects, booleans and triples are refused.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from ..face.json_limits import TooDeep, top_level_spans
from ..face.landmarks import NUM_POINTS, FaceLandmarks
from .vlm_checks import VlmOutputError, check_against_source  # noqa: F401 (VlmOutputError re-exported)
from .vlm_prompt import group_layout

MAX_REPLY_CHARS = 200_000  # a reply of 8192 tokens is ~40k characters
MAX_JSON_DEPTH = 8         # the answer needs 3 levels: {"GROUP": [[x, y], ...]}


@dataclass(frozen=True)
class SanityLimits:
    """Why these bounds: a head turn shortens the apparent IOD by ~cos(yaw) (0.35 ~ 70 degrees, as far as the
    parametric predictor turns) but keeps the nose length; a nod shortens the nose by ~cos(pitch) (0.6 ~ 53
    degrees) but keeps the IOD; turning a turned face back lengthens them (1.6). A wrong scale moves both."""
    iod_ratio: tuple[float, float] = (0.35, 1.6)   # predicted / source inter-ocular distance
    nose_ratio: tuple[float, float] = (0.6, 1.6)   # predicted / source nose length (iBUG 27 -> 33)
    jaw_backstep_iod: float = 0.08     # how far the jaw may step backwards along the eye axis
    min_eye_mouth: float = 0.2         # mouth below the eye line by >= this share of the source's gap
    max_centroid_shift_iod: float = 1.5
    out_of_range_share: float = 0.5    # beyond the canvas by more than this share of it: wrong scale
    smooth_strength: float = 0.5       # blend toward the 3-tap [1/4, 1/2, 1/4] filter
    max_smooth_px: float = 1.5         # cap on how far smoothing moves a point (canvas pixels)
    min_jaw_bulge: float = 0.15        # the jaw reaches below its ear-to-ear chord by >= this share of the source's
    min_part_width: float = 0.25       # eye / lip corner distance >= this share of the source's
    lid_overlap: float = 0.15          # an upper point may sink below its lower partner by this share of the width
    open_area: float = 0.1             # outline area / width^2 above which an eye or mouth counts as open
    flip_area: float = 0.03            # a nearly closed outline wound the other way round by more than this
    eye_convexity: float = 0.45        # an open eye's area >= this share of its convex hull
    chain_backstep: float = 0.4        # eye / lip points may step back along the corner axis by this share of width
    eye_chain_backstep: float = 0.25   # the same for the eyes (6 points, a simpler shape)
    max_angle_backstep: float = 25.0   # degrees an open outline may turn back around its centre


DEFAULT_LIMITS = SanityLimits()
# Open contours smoothed with their end points fixed; eyes and lips are left as given (6-8 points per
# closed outline: any filter would visibly shrink them and change the expression).
SMOOTHED_CONTOURS = ((0, 17), (17, 22), (22, 27), (27, 31), (31, 36))
_ANSWER_OPEN, _ANSWER_CLOSE = re.compile(r"<answer>", re.I), re.compile(r"</answer>", re.I)
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.I | re.S)
_FENCE = re.compile(r"```[ \t]*[A-Za-z]*[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_TRAILING_COMMA = re.compile(r",\s*([\]}])")


def parse_vlm_landmarks(text: str, source: FaceLandmarks, canvas: int = 512,
                        limits: SanityLimits = DEFAULT_LIMITS, smooth: bool = True) -> tuple[FaceLandmarks, list[str]]:
    """Reply -> (landmarks in the source's image space, notes). The reply is on a canvas x canvas copy of
    the source image (stretched if it was not that size); checks run on that canvas."""
    notes: list[str] = []
    if not isinstance(text, str) and text is not None:
        raise VlmOutputError("bad_structure", f"the reply is a {type(text).__name__}, not text.")
    if len(text or "") > MAX_REPLY_CHARS:
        raise VlmOutputError("too_long", f"the reply is {len(text):,} characters; at most {MAX_REPLY_CHARS:,} are read "
                             "(lower max_new_tokens, or the model is looping).")
    data = _parse_json(_locate_json(str(text or ""), notes), notes)
    pts = _points_from_structure(data)
    bad = np.flatnonzero(~np.isfinite(pts).all(axis=1))
    if bad.size:
        raise VlmOutputError("non_finite", f"points {bad.tolist()} hold NaN or infinite coordinates.")
    if np.any(pts != np.rint(pts)):
        notes.append("non-integer coordinates accepted as given")
    pts, clamped = _clamp(pts, canvas, limits, notes)
    check_against_source(pts, rescale(source.points, source.image_size, (canvas, canvas)), limits)
    if smooth:
        pts = smooth_contours(pts, limits, notes)
    points = rescale(pts, (canvas, canvas), source.image_size)
    return source.with_points(points, visibility=np.where(clamped, 0.0, 1.0), backend="vlm", score=1.0), notes


def _locate_json(text: str, notes: list[str]) -> str:
    """The part of the reply that must hold the JSON (see the module docstring)."""
    opens = list(_ANSWER_OPEN.finditer(text))
    if opens:
        start = opens[-1].end()
        close = _ANSWER_CLOSE.search(text, start)
        region = text[start:close.start() if close else len(text)]
        if not any(c in region for c in "{[`"):
            raise VlmOutputError("answer_without_json", "the <answer> section holds no JSON; coordinates elsewhere "
                                 "in the reply (e.g. in the reasoning) are not used.")
        return region
    region = _THINK.sub("", text)
    if not any(c in region for c in "{[`"):
        cut = " The reply ends inside <think>: it was probably cut off by max_new_tokens." if re.search(
            r"<think>(?!.*</think>)", text, re.I | re.S) else ""
        raise VlmOutputError("no_json", f"no JSON found in the reply ({len(text)} characters).{cut}")
    notes.append("no <answer> tag; used the JSON outside the reasoning")
    return region


def _parse_json(region: str, notes: list[str]):
    fences = [m.group(1) for m in _FENCE.finditer(region)]
    body = fences[-1] if fences else region
    first_error = None
    for attempt, candidate in enumerate((body, _TRAILING_COMMA.sub(r"\1", body))):
        value, error = _last_json_value(candidate)
        if error is None:
            if attempt:
                notes.append("trailing commas ignored")
            return value
        first_error = first_error or error
    raise VlmOutputError("malformed_json", f"the JSON does not parse ({first_error}); was the reply cut off?")


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise _DuplicateKey(repeated[0])
    return dict(pairs)


def _loads(text: str):
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates), None
    except _DuplicateKey as e:
        raise VlmOutputError("duplicate_key", f"the key '{str(e)[:40]}' appears twice; each group must be given "
                             "once.") from None
    except json.JSONDecodeError as e:
        return None, f"{e.msg} at line {e.lineno}, column {e.colno}"
    except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4300 digits
        return None, f"unreadable number or nesting ({type(e).__name__})"


def _last_json_value(text: str):
    """(value, None) for the whole text, else for its last top-level object (or list, when the text has no
    object); (None, error) when nothing parses or the last one is broken (e.g. cut off). One linear scan
    finds the top-level spans, so the cost is linear in the reply and the nesting depth is bounded."""
    try:
        spans, unclosed = top_level_spans(text, MAX_JSON_DEPTH)
    except TooDeep as e:
        raise VlmOutputError("too_deep", f"brackets nest deeper than {e.limit} levels (at character {e.position}); "
                             "the answer needs 3: {\"GROUP\": [[x, y], ...]}.") from None
    stripped = text.strip()
    if (len(spans) == 1 and unclosed is None and text[spans[0][0]:spans[0][1]] == stripped) or not (spans or unclosed):
        return _loads(stripped)
    objects = [sp for sp in spans if sp[2] == "{"]
    candidates = objects or [sp for sp in spans if sp[2] == "["]
    if unclosed is not None and (text[unclosed] == "{" or not objects) and (not candidates or unclosed > candidates[-1][0]):
        return None, f"an unclosed '{text[unclosed]}' at character {unclosed} (cut off?)"
    start, end, _ = candidates[-1]
    return _loads(text[start:end])


def _group_of(key: str) -> str | None:
    k = re.sub(r"[^a-z]", "", key.lower())
    if "jaw" in k and "brow" in k:
        return "JAW/BROWS"
    for word, group in (("brow", "BROWS"), ("jaw", "JAW"), ("nose", "NOSE"), ("eye", "EYES"),
                        ("mouth", "MOUTH"), ("lip", "MOUTH")):
        if word in k:
            return group
    return "ALL" if k in ("points", "landmarks", "coordinates") else None


def _points_from_structure(data) -> np.ndarray:
    layout = group_layout() | {"JAW": (0, 17), "BROWS": (17, 27), "ALL": (0, NUM_POINTS)}
    if isinstance(data, list):
        data = {"points": data}
    if not isinstance(data, dict):
        raise VlmOutputError("bad_structure", f"expected a JSON object of point groups, got {type(data).__name__}.")
    out = np.full((NUM_POINTS, 2), np.nan)
    owner = [None] * NUM_POINTS
    for key, value in data.items():
        group = _group_of(str(key))
        if group is None:
            raise VlmOutputError("bad_structure", f"unexpected key '{key}'; use JAW/BROWS, NOSE, EYES, MOUTH.")
        start, end = layout[group]
        taken = sorted({owner[i] for i in range(start, end) if owner[i] is not None})
        if taken:
            raise VlmOutputError("bad_structure", f"key '{key}' covers points already given by {taken}.")
        if not isinstance(value, list):
            raise VlmOutputError("bad_structure", f"'{key}' must be a list of [x, y] pairs.")
        if len(value) != end - start:
            code = "point_count" if group == "ALL" else "group_count"
            raise VlmOutputError(code, f"'{key}' has {len(value)} points; it needs {end - start} "
                                 f"(iBUG {start}-{end - 1}).")
        for j, pair in enumerate(value):
            if not (isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)):
                raise VlmOutputError("bad_point", f"'{key}' entry {j} (iBUG {start + j}) is "
                                     f"{json.dumps(pair)[:40]}, not a pair of numbers [x, y].")
            out[start + j] = [float(v) if abs(v) < 1e300 else np.inf for v in pair]  # 10**400 is an int
            owner[start + j] = str(key)
    missing = [name for name, (s, e) in group_layout().items() if any(owner[i] is None for i in range(s, e))]
    if missing:
        raise VlmOutputError("missing_group", f"no points for {', '.join(missing)}.")
    return out


def rescale(points: np.ndarray, from_size, to_size) -> np.ndarray:
    """Points of a (w, h) image on a stretched copy of size to_size; pixel centres map to pixel centres."""
    return (np.asarray(points, dtype=np.float64) + 0.5) * (np.array(to_size) / np.array(from_size)) - 0.5


def _clamp(pts: np.ndarray, canvas: int, limits: SanityLimits, notes: list[str]):
    margin = limits.out_of_range_share * canvas
    if np.any(pts < -margin) or np.any(pts > canvas - 1 + margin):
        raise VlmOutputError("out_of_range", f"coordinates span {pts.min():.0f}..{pts.max():.0f}, far outside "
                             f"0..{canvas - 1}: the model used another scale.")
    clamped = np.clip(pts, 0, canvas - 1)
    moved = (clamped != pts).any(axis=1)
    if moved.any():
        notes.append(f"points {np.flatnonzero(moved).tolist()} outside 0..{canvas - 1} clamped and marked hidden")
    return clamped, moved


def smooth_contours(pts: np.ndarray, limits: SanityLimits = DEFAULT_LIMITS, notes: list | None = None) -> np.ndarray:
    """Light 3-tap smoothing along the open contours, end points fixed, each move capped."""
    out = pts.copy()
    for start, end in SMOOTHED_CONTOURS:
        seg = pts[start:end]
        filtered = 0.25 * seg[:-2] + 0.5 * seg[1:-1] + 0.25 * seg[2:]
        move = limits.smooth_strength * (filtered - seg[1:-1])
        length = np.linalg.norm(move, axis=1, keepdims=True)
        move *= np.minimum(1.0, limits.max_smooth_px / np.maximum(length, 1e-9))
        out[start + 1:end - 1] = seg[1:-1] + move
    if notes is not None:
        notes.append(f"contours smoothed (largest move {np.abs(out - pts).max():.2f} px)")
    return out
