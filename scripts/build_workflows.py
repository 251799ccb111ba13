"""Regenerate the example workflows in workflows/ from the short descriptions in scripts/specs/.

Run after changing a node's inputs: python scripts/build_workflows.py (starts a ComfyUI to read
/object_info, so widget order always matches the real server). Each file gets its title, note, groups and the
download links of its model files (scripts/specs/downloads.py); python scripts/make_thumbnails.py then makes
the thumbnails beside them.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.comfy_server import PACK_DIR, ComfyServer  # noqa: E402
from scripts.specs import caedit, face, lato, predictor  # noqa: E402
from scripts.specs.downloads import with_downloads  # noqa: E402
from scripts.specs.face import SAMPLE_IMAGE  # noqa: E402,F401
from scripts.workflow_api import build_ui  # noqa: E402

SPEC_MODULES = (face, predictor, lato, caedit)
WORKFLOWS = {name: entry for module in SPEC_MODULES for name, entry in module.WORKFLOWS.items()}
PRESENTATION = {name: entry for module in SPEC_MODULES for name, entry in module.PRESENTATION.items()}
NEEDS_USER_MODELS = {name for module in SPEC_MODULES if getattr(module, "NEEDS_USER_MODELS", False)
                     for name in module.WORKFLOWS}


def build(name: str, object_info: dict) -> dict:
    title, nodes = WORKFLOWS[name]
    shown = PRESENTATION[name]
    return build_ui(with_downloads(nodes), object_info, title, note=shown.note, groups=shown.groups)


def main() -> None:
    with ComfyServer() as server:
        info = server.object_info()
    for name in WORKFLOWS:
        path = PACK_DIR / "workflows" / name
        path.write_text(json.dumps(build(name, info), indent=1) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    main()
