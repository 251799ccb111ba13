"""The main job: run the example workflows in a real ComfyUI on the bundled portrait, save what they make.

python scripts/run_demo.py [--out outputs/demo] [--image my_photo.jpg]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.build_workflows import NEEDS_USER_MODELS, SAMPLE_IMAGE, WORKFLOWS  # noqa: E402
from scripts.comfy_server import PACK_DIR, ComfyServer, PromptRejected, execution_error  # noqa: E402
from scripts.workflow_api import ui_to_api  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(PACK_DIR / "outputs" / "demo"), help="folder for the results")
    parser.add_argument("--image", default=str(PACK_DIR / "assets" / "portrait.jpg"), help="portrait to edit")
    parser.add_argument("--models", default=None, help="a ComfyUI models/ folder holding the LaTo weights")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    with ComfyServer(models_dir=args.models) as server:
        server.add_input_file(args.image, SAMPLE_IMAGE)
        info = server.object_info()
        for name in WORKFLOWS:
            workflow = json.loads((PACK_DIR / "workflows" / name).read_text())
            started = time.time()
            try:
                entry = server.run(ui_to_api(workflow, info))
            except PromptRejected as e:
                if name not in NEEDS_USER_MODELS:
                    raise
                print(f"{name}: skipped, its model files are not installed (see the README's model table): "
                      f"{str(e)[:300]}")
                continue
            if server.last_node_errors:   # ComfyUI ran the outputs it could and dropped the rest
                missing = "; ".join(e.get("details", "") for errs in server.last_node_errors.values()
                                    for e in errs.get("errors", []))
                print(f"{name}: partly skipped, model files are not installed (see the README's model table): "
                      f"{missing[:300]}")
                if name not in NEEDS_USER_MODELS:
                    failed = True
            error = execution_error(entry)
            if error:
                print(f"{name}: FAILED in node {error.get('node_type')}: {error.get('exception_message')}")
                failed = True
                continue
            stem = Path(name).stem
            for node_outputs in entry["outputs"].values():
                for kind in ("images", "landmarks_json"):
                    for item in node_outputs.get(kind, []):
                        if item.get("type") != "output":
                            continue
                        target = out / stem / item["filename"]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(server.output_path(item), target)
                        print(f"  wrote {target}")
            if not server.last_node_errors:
                print(f"{name}: ok in {time.time() - started:.1f} s")
    print(f"results in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
