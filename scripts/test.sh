#!/usr/bin/env bash
# Set-up command 2: install everything into .venv, then run every test (unit, parity, real ComfyUI,
# headless browser). Extra arguments go to pytest, e.g. -m "not browser".
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/install.sh"
cd "$here"
exec "${LATO_VENV:-$here/.venv}/bin/python" -m pytest "$@"
