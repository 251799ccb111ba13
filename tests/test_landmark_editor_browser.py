"""The Landmark Editor's canvas widget in the real frontend (headless Chromium) with real mouse drags.

LoadImage -> detect -> crop -> Landmark Editor -> Save Face Landmarks and Landmark Warp. One run loads the
crop into the widget; a drag of a known number of screen pixels must move exactly that point, by that
distance in crop pixels (the widget's scale), in the landmarks the next run saves, and nothing else.
"""
import json
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from scripts.comfy_server import PACK_DIR, execution_error

pytestmark = [pytest.mark.comfy, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHOTO = "face_edit_editor_astronaut.png"
EDITOR, SAVE, WARP_PREVIEW = "4", "5", "7"
CROP = 512  # Face Crop size
TOL = 2e-3  # the editor stores offsets to 1e-3 pixel and the JSON rounds points to 1e-3
GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": PHOTO}},
    "2": {"class_type": "FaceEditDetectLandmarks", "inputs": {
        "image": ["1", 0], "backend": "dlib_hog", "selection": "largest", "index": 0, "order": "score",
        "min_score": 0.3, "upsample": 1, "detect_max_side": 1024}},
    "3": {"class_type": "FaceEditCrop", "inputs": {
        "image": ["1", 0], "landmarks": ["2", 0], "size": 512, "scale": 2.0, "offset_x": 0.0, "offset_y": 0.0,
        "align_roll": False}},
    EDITOR: {"class_type": "FaceEditLandmarkEditor", "inputs": {
        "crops": ["3", 0], "landmarks": ["3", 1], "start_from": "detection", "edits": "{}"}},
    SAVE: {"class_type": "FaceEditSaveLandmarks", "inputs": {"landmarks": [EDITOR, 0], "filename_prefix": "editor/edited"}},
    "6": {"class_type": "FaceEditLandmarkWarp", "inputs": {
        "crops": ["3", 0], "source_landmarks": ["3", 1], "target_landmarks": [EDITOR, 0], "smoothing": 0.0,
        "fold_guard": True}},
    WARP_PREVIEW: {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
}
SCREENSHOTS = PACK_DIR / "outputs" / "test-screenshots"
EDITOR_JS = f"window.app.graph.getNodeById({EDITOR}).faceEditEditor"


@pytest.fixture(scope="module")
def page(comfy, astronaut_rgb):
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM), "Chromium is missing: run scripts/install.sh"
    Image.fromarray(astronaut_rgb).save(comfy.base / "input" / PHOTO)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.errors = []  # uncaught errors of the page, e.g. from the extension
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(comfy.url) else route.abort())
        page.goto(comfy.url, wait_until="networkidle")
        page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=90_000)
        page.evaluate("g => window.app.loadApiJson(g, 'landmark editor test')", GRAPH)
        page.wait_for_function(f"window.app.graph._nodes.length === {len(GRAPH)} && {EDITOR_JS}", timeout=30_000)
        # The editor big and alone at the top left, at zoom 1; the other nodes out of its way.
        page.evaluate(f"""() => {{
            const app = window.app;
            app.graph._nodes.forEach((n, i) => {{ n.pos = [700 + 40 * i, 60 + 60 * i]; }});
            const editor = app.graph.getNodeById({EDITOR});
            editor.pos = [60, 60];
            editor.setSize([460, 560]);
            app.canvas.ds.scale = 1;
            app.canvas.ds.offset = [0, 0];
            app.canvas.setDirty(true, true);
        }}""")
        yield page
        browser.close()


def _run(page, comfy) -> dict:
    """Queue from the UI, wait for the run, and return its history entry."""
    before = set(comfy.get("/history"))
    page.evaluate("window.app.queuePrompt(0, 1)")
    deadline = time.time() + 300
    while time.time() < deadline:
        new = set(comfy.get("/history")) - before
        if new:
            entry = comfy.get("/history")[new.pop()]
            if entry.get("status", {}).get("completed") is not None:
                assert entry["status"]["status_str"] == "success", execution_error(entry)
                return entry
        time.sleep(0.3)
    raise AssertionError(f"the run did not finish:\n{comfy.log()[-3000:]}")


def _saved_points(comfy, entry) -> np.ndarray:
    saved = entry["outputs"][SAVE]["landmarks_json"][0]
    return np.array(json.loads(comfy.output_path(saved).read_text())["faces"][0]["points"])


def _drag(page, index: int, points: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Drag landmark `index` (now at points[index] crop pixels) by (dx, dy) screen pixels with the mouse;
    returns the move in crop pixels. The crop is fitted into the editor's canvas, centred, keeping its aspect:
    its screen scale and position come from the canvas's box, not from the widget's own arithmetic."""
    page.wait_for_function(f"{EDITOR_JS}.ready()", timeout=30_000)
    box = page.evaluate(f"(() => {{ const r = {EDITOR_JS}.canvas.getBoundingClientRect(); "
                        "return [r.left, r.top, r.width, r.height]; })()")
    left, top, width, height = box
    scale = min(width / CROP, height / CROP)
    x = left + (width - CROP * scale) / 2 + (points[index, 0] + 0.5) * scale
    y = top + (height - CROP * scale) / 2 + (points[index, 1] + 0.5) * scale
    np.testing.assert_allclose(page.evaluate(f"{EDITOR_JS}.screenPoint({index})"), [x, y], atol=0.01)
    on_canvas = page.evaluate(f"([x, y]) => document.elementFromPoint(x, y) === {EDITOR_JS}.canvas", [x, y])
    assert on_canvas, "the editor's canvas is not under the mouse at the point"
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx / 2, y + dy / 2, steps=3)
    page.mouse.move(x + dx, y + dy, steps=3)
    page.mouse.up()
    return np.array([dx, dy]) / scale


def _stored_offsets(page) -> dict:
    return json.loads(page.evaluate(f"{EDITOR_JS}.store.value")).get("faces", {})


def _click(page, label: str):
    page.get_by_role("button", name=label).click()


def _set_modes(page, drag: str, mirror: str):
    """Click the editor's toggles (real clicks) until they read 'Drag: <drag>' and 'Mirror: <mirror>'."""
    for prefix, wanted in (("Drag", drag), ("Mirror", mirror)):
        button = page.get_by_role("button", name=f"{prefix}: ")
        if button.inner_text() != f"{prefix}: {wanted}":
            button.click()
        assert button.inner_text() == f"{prefix}: {wanted}"


def test_workflow_keeps_the_edits_as_the_nodes_one_hidden_widget(page):
    """What a saved workflow and a queued prompt hold for the editor: start_from and the edits JSON only."""
    values = page.evaluate(f"window.app.graph.getNodeById({EDITOR}).serialize().widgets_values")
    assert values == ["detection", GRAPH[EDITOR]["inputs"]["edits"]]
    posted = page.evaluate(f"async () => (await window.app.graphToPrompt()).output['{EDITOR}'].inputs")
    assert posted == GRAPH[EDITOR]["inputs"]
    hidden = page.evaluate(f"window.app.graph.getNodeById({EDITOR}).widgets.find(w => w.name === 'edits').hidden")
    assert hidden is True
    assert not page.errors


def test_dragging_a_point_moves_exactly_that_point_in_the_next_run(page, comfy):
    _set_modes(page, "point", "off")
    first = _run(page, comfy)
    start = _saved_points(comfy, first)
    shown = np.array(first["outputs"][EDITOR]["face_edit_editor"][0]["points"])
    np.testing.assert_allclose(start, shown, atol=TOL)  # the widget draws what the node outputs

    moved = _drag(page, 54, start, 36, -22)  # the subject's left mouth corner, up and out
    offsets = np.array(_stored_offsets(page)["0"])
    np.testing.assert_allclose(offsets[54], moved, atol=TOL)
    assert np.abs(np.delete(offsets, 54, axis=0)).max() == 0

    second = _run(page, comfy)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "landmark_editor.png"))
    after = _saved_points(comfy, second)
    np.testing.assert_allclose(after[54] - start[54], moved, atol=TOL)
    assert np.abs(moved).min() > 5  # a real move, in crop pixels
    np.testing.assert_array_equal(np.delete(after, 54, axis=0), np.delete(start, 54, axis=0))
    # The warp preview followed: a new picture, different from the first run's.
    warped = [comfy.output_path(e["outputs"][WARP_PREVIEW]["images"][0]) for e in (first, second)]
    a, b = (np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in warped)
    assert np.abs(a - b).max() > 40


def test_group_drag_with_mirror_moves_the_other_eye_mirrored_and_undo_reset(page, comfy):
    before = _saved_points(comfy, _run(page, comfy))   # whatever edits the widget holds so far
    stored_before = page.evaluate(f"{EDITOR_JS}.store.value")
    _set_modes(page, "group", "on")
    moved = _drag(page, 37, before, 14, -10)            # the subject's right upper lid: the whole right eye
    after = _saved_points(comfy, _run(page, comfy))
    delta = after - before
    np.testing.assert_allclose(delta[36:42], np.tile(moved, (6, 1)), atol=TOL)
    right, left = before[36:42].mean(axis=0), before[42:48].mean(axis=0)
    axis = (left - right) / np.linalg.norm(left - right)
    mirrored = moved - 2 * (moved @ axis) * axis
    assert mirrored[0] * moved[0] < 0  # sideways moves flip, up-down moves stay
    np.testing.assert_allclose(delta[42:48], np.tile(mirrored, (6, 1)), atol=TOL)
    np.testing.assert_array_equal(np.delete(delta, np.r_[36:48], axis=0), 0)

    _click(page, "Undo")
    assert page.evaluate(f"{EDITOR_JS}.store.value") == stored_before
    _click(page, "Reset")
    assert _stored_offsets(page) == {}
    entry = _run(page, comfy)
    detected = np.array(entry["outputs"][EDITOR]["face_edit_editor"][0]["points"])
    np.testing.assert_allclose(_saved_points(comfy, entry), detected, atol=TOL)  # back to the detection
    assert np.abs(detected[36:48] - after[36:48]).max() > 1  # the eye move is gone too


def test_a_drag_maps_to_crop_pixels_at_another_zoom(page, comfy):
    page.evaluate("() => { window.app.canvas.ds.scale = 0.7; window.app.canvas.setDirty(true, true); }")
    try:
        page.wait_for_function(f"Math.abs({EDITOR_JS}.layout().rect.width - {EDITOR_JS}.canvas.clientWidth * 0.7) < 2",
                               timeout=10_000)
        _set_modes(page, "point", "off")
        before = _saved_points(comfy, _run(page, comfy))
        moved = _drag(page, 8, before, -15, 25)  # the chin, down and to the picture's left
        after = _saved_points(comfy, _run(page, comfy))
        np.testing.assert_allclose(after[8] - before[8], moved, atol=TOL)
        np.testing.assert_array_equal(np.delete(after, 8, axis=0), np.delete(before, 8, axis=0))
    finally:
        page.evaluate("() => { window.app.canvas.ds.scale = 1; window.app.canvas.setDirty(true, true); }")
    assert not page.errors
