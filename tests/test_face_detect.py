"""Detection and 68 landmarks on the real photos that the installed packages ship."""
import numpy as np
import pytest
import torch
from PIL import Image

from lato_core.errors import FaceSelectionError, ImageFormatError, NoFaceError
from lato_core.face.detect import DetectOptions, detect_and_select, detect_faces, select_faces

# Pupil centres read off the photos by hand (x, y), image-left eye first.
ASTRONAUT_PUPILS = np.array([[203.0, 101.0], [246.0, 103.0]])
HOPPER_PUPILS = np.array([[222.5, 190.0], [305.5, 186.5]])
EYE_TOLERANCE_PX = 4.0


def _eyes(face):
    right, left = face.eye_centres()  # subject's right eye is on the image's left
    return np.array([right, left])


@pytest.mark.parametrize("backend", ["dlib_hog", "mediapipe"])
def test_eye_centres_match_hand_annotations(backend, astronaut, hopper):
    for image, pupils in ((astronaut, ASTRONAUT_PUPILS), (hopper, HOPPER_PUPILS)):
        faces = detect_faces(image[0], DetectOptions(backend=backend))
        assert len(faces) == 1
        err = np.linalg.norm(_eyes(faces[0]) - pupils, axis=1)
        assert err.max() < EYE_TOLERANCE_PX, err


def test_landmarks_lie_inside_the_detected_face_box(astronaut_face):
    x0, y0, x1, y1 = astronaut_face.box
    w, h = x1 - x0, y1 - y0
    pts = astronaut_face.points
    # dlib's box is tight around eyes-to-mouth; the jaw may reach a little beyond it.
    assert (pts[:, 0] > x0 - 0.15 * w).all() and (pts[:, 0] < x1 + 0.15 * w).all()
    assert (pts[:, 1] > y0 - 0.15 * h).all() and (pts[:, 1] < y1 + 0.25 * h).all()
    assert pts.shape == (68, 2) and astronaut_face.image_size == (512, 512)
    # iBUG order: chin (8) below the nose tip (30) below the eyes, mouth corners on either side of the nose
    assert pts[8, 1] > pts[30, 1] > pts[36:48, 1].mean()
    assert pts[48, 0] < pts[30, 0] < pts[54, 0]


def test_mediapipe_agrees_with_dlib_within_a_tenth_of_the_eye_distance(astronaut):
    dlib_face = detect_faces(astronaut[0], DetectOptions("dlib_hog"))[0]
    mp_face = detect_faces(astronaut[0], DetectOptions("mediapipe"))[0]
    err = np.linalg.norm(dlib_face.points - mp_face.points, axis=1) / dlib_face.interocular()
    assert err[17:].mean() < 0.1  # the jaw is the loosest part of the 478 -> 68 map
    assert err.mean() < 0.15
    assert mp_face.mesh478.shape == (478, 2)


def test_spurious_low_score_detection_is_dropped_and_ranked_last(astronaut):
    everything = detect_faces(astronaut[0], DetectOptions("dlib_hog", min_score=-5))
    assert len(everything) == 2  # the mission patch fires HOG at score ~0.1
    assert everything[0].score > 1.0 > 0.3 > everything[1].score
    assert len(detect_faces(astronaut[0])) == 1


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_no_face_raises_an_actionable_error(name):
    from skimage import data
    faces = detect_faces(getattr(data, name)())
    with pytest.raises(NoFaceError, match="No face found in image 0.*dlib_cnn"):
        select_faces(faces)


def test_small_face_missed_by_hog_is_found_by_mediapipe():
    from skimage import data
    camera = data.camera()
    assert detect_faces(camera) == []
    faces = detect_faces(camera, DetectOptions("mediapipe"))
    assert len(faces) == 1 and 180 < faces[0].points[:, 0].mean() < 300


@pytest.fixture(scope="module")
def two_faces(astronaut_rgb, hopper_rgb):
    hop = np.asarray(Image.fromarray(hopper_rgb).resize((437, 512)))
    return np.hstack([hop, astronaut_rgb])  # Hopper on the left, the astronaut on the right


def test_face_policies_on_a_two_face_photo(two_faces):
    faces = detect_faces(two_faces)
    assert len(faces) == 2
    everyone = select_faces(faces, "all", order="left_to_right")
    assert everyone[0].box[0] < 437 <= everyone[1].box[0]
    largest = select_faces(faces, "largest")[0]
    assert largest.box[0] < 437  # Hopper's face is the larger one
    second = select_faces(faces, "index", 1, order="left_to_right")[0]
    assert second.box[0] >= 437
    with pytest.raises(FaceSelectionError, match=r"Face index 5 is out of range: image 0 has 2 face\(s\), numbered 0..1"):
        select_faces(faces, "index", 5)


def test_batch_detection_tags_faces_with_their_image(astronaut, hopper):
    hop = torch.nn.functional.interpolate(hopper.permute(0, 3, 1, 2), size=(512, 512)).permute(0, 2, 3, 1)
    faces = detect_and_select(list(torch.cat([astronaut, hop])))
    assert [f.image_index for f in faces] == [0, 1]


def test_grayscale_and_rgba_inputs_give_the_same_landmarks(astronaut_rgb, astronaut_face):
    gray = np.asarray(Image.fromarray(astronaut_rgb).convert("L"))
    rgba = np.dstack([astronaut_rgb, np.full(astronaut_rgb.shape[:2], 255, np.uint8)])
    from_gray = detect_faces(gray[:, :, None])[0]
    from_rgba = detect_faces(torch.from_numpy(rgba).float() / 255)[0]
    assert np.abs(from_rgba.points - astronaut_face.points).max() < 1e-9
    assert np.linalg.norm(from_gray.points - astronaut_face.points, axis=1).mean() < 2.0


@pytest.mark.parametrize("shape, message", [((32, 32, 3), "32x32.*at least 64"), ((20, 20, 5), "channels")])
def test_unusable_images_are_refused_clearly(shape, message):
    with pytest.raises(ImageFormatError, match=message):
        detect_faces(np.zeros(shape, np.uint8))


def test_a_6000x4000_photo_is_detected_on_a_copy_and_fitted_at_full_resolution(astronaut_rgb, astronaut_face):
    big = np.zeros((4000, 6000, 3), np.uint8)
    face_area = np.asarray(Image.fromarray(astronaut_rgb).resize((2048, 2048), Image.Resampling.BICUBIC))
    big[1000:3048, 2000:4048] = face_area
    faces = detect_faces(big)
    assert len(faces) == 1 and faces[0].image_size == (6000, 4000)
    expected = astronaut_face.points * 4 + np.array([2000 + 1.5, 1000 + 1.5])
    err = np.linalg.norm(faces[0].points - expected, axis=1)
    assert np.median(err) < 0.04 * astronaut_face.interocular() * 4


def test_dlib_cnn_finds_the_small_face_hog_misses():
    from skimage import data
    faces = detect_faces(data.camera(), DetectOptions("dlib_cnn", upsample=0))
    assert len(faces) == 1 and faces[0].backend == "dlib_cnn"
    mp_box = np.array(detect_faces(data.camera(), DetectOptions("mediapipe"))[0].box)
    box = np.array(faces[0].box)
    inter = np.prod(np.clip(np.minimum(box[2:], mp_box[2:]) - np.maximum(box[:2], mp_box[:2]), 0, None))
    union = np.prod(box[2:] - box[:2]) + np.prod(mp_box[2:] - mp_box[:2]) - inter
    assert inter / union > 0.5  # the same face (the camera hides one eye, so the points themselves differ)
