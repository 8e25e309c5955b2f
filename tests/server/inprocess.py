"""The real app in process: a config compiled from YAML text, served through httpx's
ASGITransport (no sockets on the gateway side), its upstream sessions closed at the end."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import AsyncIterator

import httpx

from gateway.config.compiler import Runtime, compile_bytes
from gateway.server.app import create_app
from gateway.server.reload import GraphHolder, Reloader


@contextlib.asynccontextmanager
async def app_client(config: str, directory: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to create_app() for ``config``, stored in ``directory`` (so
    the data dir, usage database included, lives there)."""
    path = str(directory / "gateway.yaml")
    Path(path).write_text(config)
    runtime = Runtime()
    reloader = Reloader(path, runtime, GraphHolder(compile_bytes(config.encode(), path,
                                                                  version=1, runtime=runtime)))
    app = create_app(reloader, watch_config=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1", timeout=10) as client:
            client.reloader = reloader  # type: ignore[attr-defined]
            yield client
    finally:
        await runtime.clients.close()
        await runtime.state.aclose()
