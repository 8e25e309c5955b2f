"""Fixtures shared by the suite. Server tests use ``gateway_app``: the app in this process,
built as `gateway serve` builds it. ``gateway_factory`` starts a real `gateway serve` for what
needs the process itself: reload timing through the file watch, signals, --workers, replicas
sharing one Redis, the command's own flags and start-up failures."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from .fake_upstream import FakeOpenAI
from .gateway_process import GatewayProcess
from .inprocess_gateway import InProcessGateway, LogFile


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def gateway_app(tmp_path: Path, monkeypatch) -> Iterator[Callable[..., InProcessGateway]]:
    """Start the gateway in this process on a config text (as `gateway serve` would build it);
    every one is shut down afterwards. ``env`` is set for the test's duration."""
    started: list[InProcessGateway] = []
    logs = LogFile(tmp_path / "gateway.log")

    def start(config: str | None, *, env: dict[str, str] | None = None,
              name: str = "gateway.yaml", path: Path | None = None,
              environment: str | None = None, watch: bool = True) -> InProcessGateway:
        """``config`` written to tmp_path/``name``; or None: serve the file at ``path``."""
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        if config is not None:
            path = tmp_path / name
            path.write_text(config)
        gateway = InProcessGateway(path, logs, environment=environment, watch=watch)
        started.append(gateway)
        return gateway.start()

    try:
        yield start
    finally:
        for gateway in reversed(started):
            gateway.stop()
        logs.close()


@pytest.fixture
def quick_settle(monkeypatch) -> None:
    """The file watch applies a save after 50 ms of quiet instead of 300 ms: for the tests that
    rewrite the config many times under traffic, where the settle time is not the point."""
    from gateway.server import reload

    monkeypatch.setattr(reload, "SETTLE_SECONDS", 0.05)


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start the real `gateway serve` process on a config text; every process is stopped
    afterwards. For the tests where the process is the point (signals, workers, sockets)."""
    started: list[GatewayProcess] = []

    def start(config: str, *, env: dict[str, str] | None = None, name: str = "gateway.yaml",
              args: tuple[str, ...] = ()) -> GatewayProcess:
        path = tmp_path / name
        path.write_text(config)
        proc = GatewayProcess(path, env=env, args=args)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
