"""Small scripted upstreams on loopback for the hardening tests, and an in-process gateway
around a config text."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import httpx
from aiohttp import web

from gateway.config.compiler import Runtime, compile_bytes
from gateway.graph.graph import RoutingGraph
from gateway.server.app import create_app
from gateway.server.reload import GraphHolder, Reloader

from ..background_app import BackgroundApp

CHAT_ANSWER = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Scripted(BackgroundApp):
    """Answers every request under /v1 with ``answer(request)``; records what it received.
    The gateway only ever calls it under its base_url (/v1): anything else is a stray from a
    test on another xdist worker still probing (GET /readyz) a port this server got after it
    was freed, kept apart in ``strays`` so that ``seen`` counts only the gateway's calls."""

    def __init__(self, answer: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None):
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.seen: list[Seen] = []
        self.strays: list[Seen] = []
        self._answer = answer or (lambda request: _json(CHAT_ANSWER))

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.method, request.path, dict(request.headers), await request.read())
        if not request.path.startswith("/v1/"):
            self.strays.append(seen)
            raise web.HTTPNotFound()
        self.seen.append(seen)
        return await self._answer(request)


async def _json(data) -> web.Response:
    return web.json_response(data)


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, config: str) -> AsyncIterator[tuple[httpx.AsyncClient, RoutingGraph]]:
    """The real app in process around ``config`` (written to tmp_path/gateway.yaml)."""
    path = tmp_path / "gateway.yaml"
    path.write_text(config)
    runtime = Runtime()
    graph = compile_bytes(config.encode(), str(path), version=1, runtime=runtime)
    app = create_app(Reloader(str(path), runtime, GraphHolder(graph)), watch_config=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1:8080") as client:
            yield client, graph
    finally:
        await runtime.clients.close()


def chat(model: str, stream: bool = False) -> dict:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
