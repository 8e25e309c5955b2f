"""The systems under test: each is a row group in the results table.

A System says how to start something that serves the OpenAI API on 127.0.0.1 in front of the fake
upstream, and how to tell it is ready. To add one (LiteLLM, Portkey, ...), write a function that
turns a Setup into argv (writing any config file it needs into setup.workdir) and add a System to
SYSTEMS. Every system process also gets BENCH_UPSTREAM_URL (``http://127.0.0.1:U/v1``) in its
environment, so a config file can point at the fake upstream with ``${BENCH_UPSTREAM_URL}``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
MODEL = "bench-model"


@dataclass(frozen=True)
class Setup:
    """What a system needs to know to start."""

    port: int
    upstream_url: str  # http://127.0.0.1:U/v1
    workdir: Path  # a private temporary directory, also the process's working directory
    gateway_config: Path | None  # --gateway-config, if given


@dataclass(frozen=True)
class System:
    name: str
    description: str
    argv: Callable[[Setup], list[str]] | None  # None: the fake upstream itself, nothing to start
    ready_path: str = "/readyz"


GATEWAY_CONFIG = """\
version: 1
server: {{host: 127.0.0.1, port: {port}}}
providers:
  up: {{type: openai-compatible, base_url: {upstream_url}}}
routes:
  {model}: {{target: {{provider: up, model: fake-model}}}}
observability: {{request_log: false}}
"""


def gateway_executable() -> Path:
    """The `gateway` script beside the running interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / "gateway"
    if beside.exists():
        return beside
    found = shutil.which("gateway")
    if found is None:
        raise FileNotFoundError(f"no `gateway` beside {sys.executable} nor on PATH: install the project (pip install -e .)")
    return Path(found)


def _gateway_argv(setup: Setup) -> list[str]:
    config = setup.gateway_config
    if config is None:
        config = setup.workdir / "gateway.yaml"
        config.write_text(GATEWAY_CONFIG.format(port=setup.port, upstream_url=setup.upstream_url, model=MODEL))
    return [
        str(gateway_executable()), "serve", "--config", str(config.resolve()),
        "--host", "127.0.0.1", "--port", str(setup.port),
    ]


def _bare_argv(setup: Setup) -> list[str]:
    return [
        sys.executable, str(BENCH_DIR / "bare_proxy.py"),
        "--port", str(setup.port), "--upstream", setup.upstream_url,
    ]


SYSTEMS = {
    system.name: system
    for system in (
        System("direct", "the fake upstream itself, no proxy", None, ready_path="/v1/models"),
        System("bare", "bare aiohttp pass-through, the floor for a Python proxy", _bare_argv),
        System("gateway", "Bodhi Gateway, `gateway serve`", _gateway_argv),
    )
}
