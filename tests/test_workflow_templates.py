"""The example workflows as templates: title, groups, a note, download links the frontend's missing-models dialog
accepts, and a thumbnail the template browser shows."""
import contextlib
import copy
import json
import urllib.request

import pytest
from PIL import Image

from scripts.build_workflows import PRESENTATION, build
from scripts.build_workflows import WORKFLOWS as SPECS
from scripts.comfy_server import PACK_DIR, PACK_NAME, ComfyServer
from scripts.workflow_api import ui_to_api
from tests.workflow_models import BUILDERS, install_models

WORKFLOWS = sorted((PACK_DIR / "workflows").glob("*.json"))
IDS = [p.stem for p in WORKFLOWS]
# Loader widgets whose file the dialog cannot download (a pickle to repack, a model folder, a user-trained or
# user-chosen file): the note must name them instead.
NO_DOWNLOAD = {("FaceEditLaToModelLoader", "landmark_adapter"), ("FaceEditLaToTextEncoderLoader", "folder"),
               ("CLIPVisionLoader", "clip_name"), ("FaceEditCA2AdapterLoader", "adapter_name")}
DOWNLOAD_HOSTS = ("https://huggingface.co/", "https://civitai.com/")   # what the frontend's dialog allows


def _load(path):
    return json.loads(path.read_text())


def _notes(workflow):
    return [n for n in workflow["nodes"] if n["type"] == "Note"]


def _loader_files(path, workflow):
    """(node, widget, file name, models/ folder) for every model-loading widget, read from the workflow's spec (the
    stale-file test below checks the file is what that spec builds)."""
    _, spec = SPECS[path.name]
    by_id = {n["id"]: n for n in workflow["nodes"]}
    return [(by_id[n["id"]], widget, value, BUILDERS[(n["type"], widget)][0])
            for n in spec for widget, value in n.get("widgets", {}).items()
            if (n["type"], widget) in BUILDERS and not value.startswith("(")]


@pytest.fixture(params=WORKFLOWS, ids=IDS)
def example(request):
    return request.param, _load(request.param)


def test_there_are_example_workflows():
    assert len(WORKFLOWS) >= 5


def test_each_has_a_title_and_a_note_naming_what_it_needs(example):
    path, workflow = example
    assert len(workflow["extra"]["info"]["title"]) > 10
    notes = _notes(workflow)
    assert len(notes) == 1, "one Note per workflow"
    text = notes[0]["widgets_values"][0]
    assert len(text) > 200 and ("Needs" in text or "Model files" in text)
    for node, widget, file_name, folder in _loader_files(path, workflow):
        if (node["type"], widget) in NO_DOWNLOAD:
            assert f"models/{folder}/{file_name}" in text, f"the note does not say where {file_name} goes"


def test_every_node_but_the_note_sits_in_exactly_one_group(example):
    _, workflow = example
    groups = workflow["groups"]
    assert len(groups) >= 3 and all(g["title"] for g in groups)
    for node in workflow["nodes"]:
        x, y = node["pos"]
        w, h = node["size"]
        inside = [g["title"] for g in groups
                  if g["bounding"][0] <= x and x + w <= g["bounding"][0] + g["bounding"][2]
                  and g["bounding"][1] <= y - 30 and y + h <= g["bounding"][1] + g["bounding"][3]]
        expected = 0 if node["type"] == "Note" else 1
        assert len(inside) == expected, f"{node['type']} {node['id']} is in groups {inside}"


def test_every_downloadable_model_file_carries_a_link_the_dialog_accepts(example):
    path, workflow = example
    for node, widget, file_name, folder in _loader_files(path, workflow):
        entries = [m for m in node["properties"].get("models", []) if m["name"] == file_name]
        if (node["type"], widget) in NO_DOWNLOAD:
            assert not entries, f"{file_name} has a link the dialog would refuse or that is not known"
            continue
        assert len(entries) == 1, f"{node['type']}.{widget} = {file_name} has no properties.models entry"
        entry = entries[0]
        assert entry["url"].startswith(DOWNLOAD_HOSTS) and "/resolve/" in entry["url"], entry
        assert entry["url"].endswith(".safetensors") and entry["name"].endswith(".safetensors"), entry
        assert entry["directory"] == folder, f"{file_name}: {entry['directory']} is not the loader's folder {folder}"
    for node in workflow["nodes"]:   # the frontend only keeps entries that name one of the node's widget values
        for entry in node["properties"].get("models", []):
            assert entry["name"] in node["widgets_values"], (node["type"], entry)


def test_the_lato_workflow_links_the_four_release_files_and_core_s_qwen_image_encoder():
    workflow = _load(PACK_DIR / "workflows" / "lato_edit.json")
    base = "https://huggingface.co/Alibaba-Research-Intelligence-Computing/LaTo/resolve/main/"
    qwen_image = "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/"
    assert {(m["url"].removeprefix(base).removeprefix(qwen_image), m["directory"]) for m in workflow["models"]} == {
        ("lato/lato.safetensors", "diffusion_models"), ("lora/lato.safetensors", "loras"),
        ("lato/vae.safetensors", "vae"), ("Po_VQVAE/model.safetensors", "lato"),
        ("text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors", "text_encoders")}
    loaders = {n["type"] for n in workflow["nodes"]}
    assert {"CLIPLoader", "VAELoader", "LoraLoaderModelOnly", "KSampler"} <= loaders   # core's wherever core has one
    assert "FaceEditLaToTextEncoderLoader" not in loaders
    note = _notes(workflow)[0]["widgets_values"][0]
    assert "python -m lato_core.repack adapter landmark_in.pth landmark_in.safetensors" in note


def test_top_level_models_are_the_union_of_the_nodes(example):
    _, workflow = example
    per_node = [json.dumps(m, sort_keys=True) for n in workflow["nodes"] for m in n["properties"].get("models", [])]
    top = [json.dumps(m, sort_keys=True) for m in workflow.get("models", [])]
    assert len(top) == len(set(top))
    assert set(top) == set(per_node)


def test_each_has_a_small_jpeg_thumbnail_beside_it(example):
    path = example[0].with_suffix(".jpg")
    assert path.is_file(), "run scripts/make_thumbnails.py"
    assert path.stat().st_size < 100_000
    with Image.open(path) as picture:
        assert picture.format == "JPEG" and max(picture.size) <= 512 and min(picture.size) >= 64


@pytest.mark.comfy
def test_files_are_what_the_generator_writes_and_the_note_never_reaches_the_server(comfy):
    info = comfy.object_info()
    for path in WORKFLOWS:
        workflow = _load(path)
        assert workflow == json.loads(json.dumps(build(path.name, info))), f"{path.name} is stale: run build_workflows"
        prompt = ui_to_api(workflow, info)
        assert "Note" not in {n["class_type"] for n in prompt.values()}
        bare = copy.deepcopy(workflow)
        bare["nodes"] = [n for n in bare["nodes"] if n["type"] != "Note"]
        bare["groups"] = []
        assert prompt == ui_to_api(bare, info)


@pytest.mark.comfy
def test_the_server_serves_the_thumbnails_where_the_template_browser_asks(comfy):
    for path in WORKFLOWS:
        url = f"{comfy.url}/api/workflow_templates/{PACK_NAME}/{path.stem}.jpg"
        with urllib.request.urlopen(url, timeout=30) as reply:
            assert reply.read() == path.with_suffix(".jpg").read_bytes()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def _frontend(browser, server):
    """The real frontend of this server in a fresh page, cut off from outside hosts."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    local_only = lambda route: route.continue_() if route.request.url.startswith(server.url) else route.abort()  # noqa: E731
    page.route("**/*", local_only)
    page.goto(server.url, wait_until="networkidle")
    page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=90_000)
    try:
        yield page
    finally:
        page.close()


@pytest.fixture(scope="module")
def page_without_models(browser, comfy):
    """The real frontend on a server with no model files, as a new user opens the templates."""
    with _frontend(browser, comfy) as page:
        yield page


MISSING_MODELS_JS = """Array.from(document.querySelectorAll('.p-dialog')).map(d => d.innerText)
    .filter(t => t.includes('Missing Models'))"""


@pytest.mark.comfy
@pytest.mark.browser
@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_the_frontend_offers_the_downloads_sees_the_groups_and_never_sends_the_note(page_without_models, comfy, path):
    page, workflow = page_without_models, _load(path)
    page.keyboard.press("Escape")   # a dialog left by the previous workflow
    page.wait_for_function(f"!({MISSING_MODELS_JS}).length", timeout=10_000)
    page.evaluate("wf => window.app.loadGraphData(wf)", workflow)
    page.wait_for_function(f"window.app.graph._nodes.length === {len(workflow['nodes'])}", timeout=30_000)
    expected = sorted(f"{m['directory']} / {m['name']}" for m in workflow.get("models", []))
    if expected:
        page.wait_for_function(f"({MISSING_MODELS_JS}).length === 1", timeout=30_000)
        text = page.evaluate(MISSING_MODELS_JS)[0]
        assert sorted(line for line in text.splitlines() if " / " in line) == expected
        assert "not allowed" not in text and "Only allowed suffixes" not in text and "Invalid directory" not in text
    groups = page.evaluate("window.app.graph._groups.map(g => { g.recomputeInsideNodes(); "
                           "return [g.title, Array.from(g.children).map(c => c.id).filter(i => i !== undefined)]; })")
    assert [(title, sorted(ids)) for title, ids in groups] == [
        (title, sorted(ids)) for title, ids in PRESENTATION[path.name].groups]
    sent = page.evaluate("async () => (await window.app.graphToPrompt()).output")
    info = comfy.object_info()
    sent = {node_id: {"class_type": node["class_type"], "inputs": node["inputs"]} for node_id, node in sent.items()}
    assert sent == ui_to_api(workflow, info)


@pytest.mark.comfy
@pytest.mark.browser
def test_installed_files_are_not_reported_missing(browser, tmp_path):
    """The names and folders in the links are the ones the server lists, so a user with the files sees no dialog."""
    with ComfyServer(tmp_path / "comfy") as server:
        info = server.object_info()
        workflow = _load(PACK_DIR / "workflows" / "lato_edit.json")
        install_models(ui_to_api(workflow, info), server.base / "models")
        with _frontend(browser, server) as page:
            page.evaluate("wf => window.app.loadGraphData(wf)", workflow)
            page.wait_for_function(f"window.app.graph._nodes.length === {len(workflow['nodes'])}", timeout=30_000)
            page.wait_for_timeout(3000)   # the dialog, if any, opens after the model folders are read
            assert page.evaluate(MISSING_MODELS_JS) == []
