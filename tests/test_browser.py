"""The real ComfyUI frontend in headless Chromium: every example workflow loads, serializes as posted and runs from
the UI with the models it names (tiny random ones; core's qwen_image text encoder only exists at 7B, so that one is
a random full-size file, see tests/full_qwen_image.py), showing latent previews while its sampler runs."""
import json
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from scripts.build_workflows import SAMPLE_IMAGE
from scripts.comfy_server import PACK_DIR, execution_error
from scripts.workflow_api import set_widget, ui_to_api
from tests.workflow_models import install_models, unknown_loaders

pytestmark = [pytest.mark.comfy, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WORKFLOWS = sorted((PACK_DIR / "workflows").glob("*.json"))
SCREENSHOTS = PACK_DIR / "outputs" / "test-screenshots"
# What a user on a 2-core CPU would turn down before pressing Run: crop size and step counts (node type, widget).
SMALL_RUN = {("FaceEditCrop", "size"): 128, ("BasicScheduler", "steps"): 2, ("FaceEditLaToReleaseSchedule", "steps"): 2,
             ("KSampler", "steps"): 2}
SAMPLERS = ("KSampler", "SamplerCustomAdvanced")
STEP_WIDGETS = ("KSampler", "BasicScheduler", "FaceEditLaToReleaseSchedule")   # where a prompt's step counts live


def _sampling_steps(prompt: dict) -> int:
    return sum(node["inputs"]["steps"] for node in prompt.values() if node["class_type"] in STEP_WIDGETS)


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """This module's server sends latent previews, as a user's started with --preview-method does."""
    from scripts.comfy_server import ComfyServer

    with ComfyServer(tmp_path_factory.mktemp("comfy_ui"), extra_args=("--preview-method", "latent2rgb")) as server:
        yield server


def _small(workflow: dict, info: dict) -> dict:
    for node in workflow["nodes"]:
        for (kind, widget), value in SMALL_RUN.items():
            if node["type"] == kind:
                set_widget(node, info, widget, value)
    return workflow


@pytest.fixture(scope="module")
def page(comfy):
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM) or (PACK_DIR / CHROMIUM).exists(), "Chromium is missing: run scripts/install.sh"
    comfy.add_input_file(PACK_DIR / "assets" / "portrait.jpg", SAMPLE_IMAGE)
    info = comfy.object_info()
    for path in WORKFLOWS:   # before the page loads, so its model menus list them
        install_models(ui_to_api(json.loads(path.read_text()), info), comfy.base / "models")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # Nothing but the local server: the frontend's calls to outside hosts are refused here.
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(comfy.url) else route.abort())
        page.goto(comfy.url, wait_until="networkidle")
        page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=90_000)
        page.evaluate("window.app.api.addEventListener('b_preview', "
                      "() => { window.__previews = (window.__previews || 0) + 1; })")
        yield page
        browser.close()


def _load(page, workflow: dict):
    page.evaluate("wf => window.app.loadGraphData(wf)", workflow)
    page.wait_for_function(f"window.app.graph._nodes.length === {len(workflow['nodes'])}", timeout=30_000)


def _fit_and_shoot(page, path):
    page.evaluate("window.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    time.sleep(1.5)
    page.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("HSV")).astype(np.int16)


def _colourful_pixels(hsv) -> int:
    return int(((hsv[..., 1] > 90) & (hsv[..., 2] > 80)).sum())


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_loads_with_no_missing_node_type(page, path):
    workflow = json.loads(path.read_text())
    _load(page, workflow)
    nodes = page.evaluate("window.app.graph._nodes.map(n => [n.type, !!window.LiteGraph.registered_node_types[n.type]])")
    missing = [t for t, known in nodes if not known]
    assert not missing, f"{path.name}: unknown node types {missing}"
    assert sorted(t for t, _ in nodes) == sorted(n["type"] for n in workflow["nodes"])


def _frontend_prompt(page) -> dict:
    """What the frontend would POST for the loaded graph, without its display-only _meta."""
    output = page.evaluate("async () => (await window.app.graphToPrompt()).output")
    return {node_id: {"class_type": node["class_type"], "inputs": node["inputs"]} for node_id, node in output.items()}


def _queue_from_ui_and_wait(page, comfy, timeout: float = 900) -> dict:
    done_before = set(comfy.get("/history"))
    page.evaluate("window.app.queuePrompt(0, 1)")
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = set(comfy.get("/history")) - done_before
        if new:
            entry = comfy.get("/history")[new.pop()]
            if entry.get("status", {}).get("completed") is not None:
                return entry
        time.sleep(0.5)
    raise AssertionError(f"the run queued from the UI did not finish in {timeout:.0f} s:\n{comfy.log()[-3000:]}")


def test_example_runs_from_the_ui_and_shows_its_previews(page, comfy, tmp_path):
    """Runs before the other runs of this server: nodes they ran would come from the cache, which sends no previews."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _load(page, json.loads((PACK_DIR / "workflows" / "face_landmarks_crop_stitch.json").read_text()))
    before = _fit_and_shoot(page, SCREENSHOTS / "before_run.png")
    done_before = len(comfy.get("/history"))
    page.evaluate("window.app.queuePrompt(0, 1)")
    deadline = time.time() + 180
    while time.time() < deadline and len(comfy.get("/history")) == done_before:
        time.sleep(0.5)
    history = comfy.get("/history")
    assert len(history) == done_before + 1, "the UI did not queue the workflow"
    assert list(history.values())[-1]["status"]["status_str"] == "success"
    expected = ["FaceEditDetectLandmarks", "FaceEditCrop", "FaceEditDrawLandmarks", "FaceEditRegionMask", "SaveImage"]
    shown_js = "window.app.graph._nodes.filter(n => n.imgs && n.imgs[0] && n.imgs[0].naturalWidth > 0).map(n => n.type)"
    try:
        page.wait_for_function(f"(() => {{ const s = new Set({shown_js}); return {expected}.every(t => s.has(t)); }})()",
                               timeout=60_000)
    finally:
        shown = page.evaluate(shown_js)
    assert set(expected) <= set(shown), shown
    after = _fit_and_shoot(page, SCREENSHOTS / "after_run.png")
    # The previews (an orange space suit, the red mask, coloured landmarks) fill the screenshot with colour.
    assert _colourful_pixels(after) > _colourful_pixels(before) + 20_000


@pytest.mark.slow
@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_serializes_as_posted_and_runs_from_the_ui(page, comfy, path):
    info = comfy.object_info()
    workflow = _small(json.loads(path.read_text()), info)
    posted = ui_to_api(workflow, info)
    assert not unknown_loaders(posted), f"{path.name}: the tests cannot build these models"
    _load(page, workflow)
    assert _frontend_prompt(page) == posted, f"{path.name}: the frontend sends other widget values or links"
    page.evaluate("window.__previews = 0")
    entry = _queue_from_ui_and_wait(page, comfy)
    assert entry["status"]["status_str"] == "success", (path.name, execution_error(entry))
    if any(node["class_type"] in SAMPLERS for node in posted.values()):
        assert page.evaluate("window.__previews") >= _sampling_steps(posted), f"{path.name}: not a preview per step"
    saved = [str(n["id"]) for n in workflow["nodes"] if n["type"] == "SaveImage"]
    assert saved, f"{path.name} saves nothing"
    for node_id in saved:
        images = entry["outputs"].get(node_id, {}).get("images", [])
        assert images, f"{path.name}: SaveImage {node_id} wrote nothing"
        for image in images:
            assert comfy.output_path(image).is_file()
