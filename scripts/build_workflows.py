"""Regenerate the example workflows in workflows/ from the short descriptions in scripts/specs/.

Run after changing a node's inputs: python scripts/build_workflows.py (starts a ComfyUI to read
/object_info, so widget order always matches the real server).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.comfy_server import PACK_DIR, ComfyServer  # noqa: E402
from scripts.specs import caedit, face, lato, predictor  # noqa: E402
from scripts.specs.face import SAMPLE_IMAGE  # noqa: E402,F401
from scripts.workflow_api import build_ui  # noqa: E402

SPEC_MODULES = (face, predictor, lato, caedit)
WORKFLOWS = {name: entry for module in SPEC_MODULES for name, entry in module.WORKFLOWS.items()}
NEEDS_USER_MODELS = {name for module in SPEC_MODULES if getattr(module, "NEEDS_USER_MODELS", False)
                     for name in module.WORKFLOWS}


def main() -> None:
    with ComfyServer() as server:
        info = server.object_info()
    for name, (title, spec) in WORKFLOWS.items():
        path = PACK_DIR / "workflows" / name
        path.write_text(json.dumps(build_ui(spec, info, title), indent=1) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    main()
