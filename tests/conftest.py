from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from .fake_upstream import FakeOpenAI
from .gateway_process import GatewayProcess


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start the real gateway on a config text; every process is stopped afterwards."""
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
