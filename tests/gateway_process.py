"""Run the real `gateway serve` in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

from . import loopback
from .background_app import free_port


def write_atomically(path: Path, text: str) -> None:
    """Replace a file the way editors do: write a temporary file, then rename it over."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


class RequestMethods:
    """get/post/delete through ``self.request(method, path, **kwargs)``."""

    def request(self, method: str, path: str, **kwargs):
        raise NotImplementedError

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs):
        return self.request("DELETE", path, **kwargs)


class GatewayProcess(RequestMethods):
    def __init__(self, config_path: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()):
        self.config_path = config_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.log_path = config_path.parent / f"gateway-{self.port}.log"

    def start(self, timeout: float = 30.0) -> "GatewayProcess":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(self.config_path),
             "--port", str(self.port), *self.args],
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if loopback.get(self.base_url + "/readyz", timeout=0.5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not become ready:\n{self.log()}")

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """An HTTP request to the server (``path`` from the root); the same methods as the
        in-process gateway's, so helpers work with both."""
        kwargs.setdefault("timeout", 10)
        return loopback.request(method, self.base_url + path, **kwargs)

    def stream(self, method: str, path: str, **kwargs):
        kwargs.setdefault("timeout", 10)
        return loopback.stream(method, self.base_url + path, **kwargs)

    def openai(self, api_key: str = "unused") -> openai.OpenAI:
        """The official client, over a real socket to the server."""
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=api_key, max_retries=0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None and not self._log.closed:
                self._log.close()
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()

    def wait_for_version(self, version: int, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        info: dict = {}
        while time.monotonic() < deadline:
            info = self.get("/admin/config", timeout=2).json()
            if info["version"] >= version:
                return info
            time.sleep(0.02)
        raise AssertionError(f"config version {version} not applied in {timeout}s: {info}")
