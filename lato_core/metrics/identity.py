"""Identity between a source face and its edit.

dlib (offline, always available): the 128-D ResNet descriptor from face_recognition_models, aligned by
the face's 68 landmarks (dlib accepts 68-point shapes for its face chips), compared by Euclidean
distance; the same person is below 0.6. For Eq. 7 the distance becomes a similarity 1 - d / 1.2
(clipped to 0..1), so the 0.6 threshold sits at 0.5.

ArcFace (optional, as in the paper): a user-supplied ArcFace ONNX model (e.g. insightface's
w600k_r50.onnx), run with onnxruntime on the standard 112 x 112 five-point alignment; cosine similarity.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from ..errors import FaceEditError, MissingBackendError, NoFaceError
from ..face.detect import _dlib, detect_faces, dlib_model_path
from ..face.image import as_rgb_float, as_rgb_uint8
from ..face.landmarks import FaceLandmarks
from ..face.affine import warp_affine

DLIB_SAME_PERSON = 0.6
DLIB_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
# insightface's 112 x 112 template: eye centres (image left, right), nose tip, mouth corners.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])


def _single(image) -> np.ndarray:
    arr = image.detach().cpu().numpy() if torch.is_tensor(image) else np.asarray(image)
    return arr[0] if arr.ndim == 4 else arr


def _face_or_detect(rgb: np.ndarray, face: FaceLandmarks | None) -> FaceLandmarks:
    if face is not None:
        return face
    faces = detect_faces(rgb)
    if not faces:
        raise NoFaceError("No face found to measure identity on; pass the face's landmarks instead.")
    return faces[0]


@functools.lru_cache(maxsize=1)
def _dlib_recognizer():
    return _dlib().face_recognition_model_v1(dlib_model_path(DLIB_MODEL))


def dlib_descriptor(image, face: FaceLandmarks | None = None) -> np.ndarray:
    """128-D descriptor of the face in image (H, W, C); face gives its 68 landmarks (detected if None)."""
    dlib = _dlib()
    rgb = as_rgb_uint8(_single(image))
    face = _face_or_detect(rgb, face)
    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
    parts = [dlib.point(int(round(x)), int(round(y))) for x, y in face.points]
    shape = dlib.full_object_detection(dlib.rectangle(x0, y0, x1, y1), parts)
    return np.asarray(_dlib_recognizer().compute_face_descriptor(rgb, shape), dtype=np.float64)


def identity_distance(image_a, image_b, face_a: FaceLandmarks | None = None,
                      face_b: FaceLandmarks | None = None) -> float:
    """Euclidean distance of the dlib descriptors; 0 for the same picture, < 0.6 for the same person."""
    return float(np.linalg.norm(dlib_descriptor(image_a, face_a) - dlib_descriptor(image_b, face_b)))


def dlib_similarity(distance: float) -> float:
    """Distance -> similarity in 0..1 for Eq. 7: 1 - d / (2 * 0.6), so the same-person threshold is 0.5."""
    return float(np.clip(1.0 - distance / (2.0 * DLIB_SAME_PERSON), 0.0, 1.0))


def five_points(face: FaceLandmarks) -> np.ndarray:
    """ArcFace's five points from the 68: eye centres (image left first), nose tip, mouth corners."""
    p = face.points
    return np.array([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (Umeyama) mapping src points onto dst."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / s.var(0).sum()
    return np.column_stack([scale * rot, md - scale * rot @ ms])


class ArcFaceModel:
    """An ArcFace ONNX model (input N x 3 x S x S RGB, (x - 127.5) / 127.5; output an embedding)."""

    def __init__(self, path: str | Path, providers: list[str] | None = None):
        try:
            import onnxruntime
        except ImportError:
            raise MissingBackendError("ArcFace identity needs onnxruntime: pip install onnxruntime "
                                      "(or onnxruntime-gpu); or use the dlib identity distance.") from None
        path = Path(path)
        if not path.is_file():
            raise FaceEditError(f"ArcFace model '{path.name}' not found: give an ArcFace ONNX file such as "
                                "insightface's w600k_r50.onnx (buffalo_l).")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime's text quotes the full path and parser internals
            raise FaceEditError(f"'{path.name}' is not a usable ArcFace ONNX model ({type(e).__name__}); use an "
                                "ArcFace .onnx export such as insightface's w600k_r50.onnx.") from None
        spec = self.session.get_inputs()[0]
        self.input_name = spec.name
        self.size = spec.shape[-1] if isinstance(spec.shape[-1], int) else 112

    def aligned(self, image, face: FaceLandmarks) -> torch.Tensor:
        """(1, 3, S, S) float crop of the face on the ArcFace template, 0..1."""
        rgb = torch.from_numpy(as_rgb_float(_single(image))).permute(2, 0, 1)[None]
        matrix = similarity_transform(five_points(face), ARCFACE_TEMPLATE * self.size / 112.0)
        return warp_affine(rgb, matrix, (self.size, self.size))[0]

    def embedding(self, image, face: FaceLandmarks | None = None) -> np.ndarray:
        face = _face_or_detect(as_rgb_uint8(_single(image)), face)
        blob = (self.aligned(image, face).numpy() * 255.0 - 127.5) / 127.5
        out = np.asarray(self.session.run(None, {self.input_name: blob.astype(np.float32)})[0], np.float64).ravel()
        return out / max(np.linalg.norm(out), 1e-12)

    def cosine(self, image_a, image_b, face_a: FaceLandmarks | None = None,
               face_b: FaceLandmarks | None = None) -> float:
        return float(self.embedding(image_a, face_a) @ self.embedding(image_b, face_b))
