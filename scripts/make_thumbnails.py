"""Thumbnails for the template browser: workflows/<name>.jpg beside each workflows/<name>.json, from its real output.

python scripts/make_thumbnails.py [names...]

Runs each example workflow in a real ComfyUI (scripts/comfy_server.py) on the bundled portrait and keeps a small
JPEG of its main SaveImage output (scripts/specs: Presentation.main_output). Model files are the tests' tiny
random ones under the workflow's own names (tests/workflow_models.py), with a small crop and few steps, so this
runs on a CPU in minutes. The face and predictor workflows therefore give real pictures; the LaTo and CA-Edit
ones show random-weight noise inside the face crop, stitched into the real photo: honest about being a model-less
run, and still a picture of what the workflow produces (the photo with its face region replaced).

The frontend (1.32) asks for a custom pack's template thumbnail as /api/workflow_templates/<pack>/<name>.jpg, so
the thumbnails are JPEG.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.build_workflows import PRESENTATION, SAMPLE_IMAGE, WORKFLOWS  # noqa: E402
from scripts.comfy_server import PACK_DIR, ComfyServer, execution_error  # noqa: E402
from scripts.workflow_api import set_widget, ui_to_api  # noqa: E402
from tests.workflow_models import install_models  # noqa: E402

THUMBNAIL_SIDE = 256
MAX_BYTES = 100_000
# (node type, widget) -> value: what makes a run quick on a CPU
QUICK_RUN = {("FaceEditCrop", "size"): 256, ("BasicScheduler", "steps"): 3, ("KSampler", "steps"): 3}


def quick(workflow: dict, info: dict) -> dict:
    for node in workflow["nodes"]:
        for (kind, widget), value in QUICK_RUN.items():
            if node["type"] == kind:
                set_widget(node, info, widget, value)
    return workflow


def thumbnail_jpeg(picture: Image.Image, side: int = THUMBNAIL_SIDE) -> bytes:
    """A JPEG at most side x side (aspect kept), under MAX_BYTES."""
    small = picture.convert("RGB")
    small.thumbnail((side, side), Image.LANCZOS)
    for quality in (85, 75, 60):
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=quality, optimize=True)
        if buffer.tell() < MAX_BYTES:
            break
    return buffer.getvalue()


def main_output_picture(server: ComfyServer, workflow: dict, info: dict, main_output: int) -> Image.Image:
    prompt = ui_to_api(quick(workflow, info), info)
    install_models(prompt, server.base / "models")
    entry = server.run(prompt, timeout=1200)
    if entry["status"]["status_str"] != "success":
        raise RuntimeError(f"run failed: {execution_error(entry)}")
    images = entry["outputs"].get(str(main_output), {}).get("images", [])
    if not images:
        raise RuntimeError(f"SaveImage {main_output} wrote nothing")
    return Image.open(server.output_path(images[0]))


def main(names: list[str]) -> int:
    names = names or list(WORKFLOWS)
    with ComfyServer() as server:
        server.add_input_file(PACK_DIR / "assets" / "portrait.jpg", SAMPLE_IMAGE)
        info = server.object_info()
        for name in names:
            workflow = json.loads((PACK_DIR / "workflows" / name).read_text())
            picture = main_output_picture(server, workflow, info, PRESENTATION[name].main_output)
            target = (PACK_DIR / "workflows" / name).with_suffix(".jpg")
            target.write_bytes(thumbnail_jpeg(picture))
            print(f"wrote {target} ({target.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
