#!/usr/bin/env bash
# Set-up command 1: install everything into .venv, then run the example workflows in a real ComfyUI
# on the bundled portrait. Results go to outputs/demo/ (or --out DIR).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/install.sh"
exec "${LATO_VENV:-$here/.venv}/bin/python" "$here/scripts/run_demo.py" "$@"
