"""uvicorn with httptools (the default engine): HTTP/1.1 parsed in C.

server.max_connections is uvicorn's own ``limit_concurrency`` (a request on a connection beyond
it gets 503); server.header_timeout and server.body_timeout are the protocol in
uvicorn_protocol.py; the listening socket is bound by the gateway (common.bind_socket) and
handed to ``Server.serve(sockets=...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import uvicorn

from ...graph.graph import ServerSettings
from .common import SHUTDOWN_GRACE, bind_label, bind_socket, stopping_on
from .uvicorn_protocol import with_timeouts


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # uvicorn's public hook
        yield  # the gateway's own handlers (serve.py) stay in charge: drain, then stop


class Uvicorn:
    name = "uvicorn"

    def __init__(self, host: str, port: int, settings: ServerSettings = ServerSettings()):
        self.host, self.port = host, port
        self.settings = settings
        self.bind = [bind_label(host, port)]

    def config(self, app: Any = None) -> uvicorn.Config:
        return uvicorn.Config(
            app, host=self.host, port=self.port, lifespan="on", log_level="warning",
            http=with_timeouts(self.settings.header_timeout, self.settings.body_timeout),
            access_log=False, server_header=False,
            proxy_headers=False,  # as on the other engines: the client is the peer address
            timeout_keep_alive=75, timeout_graceful_shutdown=SHUTDOWN_GRACE,
            # uvicorn counts the new connection too: N are served
            limit_concurrency=self.settings.max_connections + 1)

    def sockets(self) -> Any:
        return [bind_socket(self.host, self.port)]

    async def serve(self, app: Any, sockets: Any, stop: asyncio.Event) -> None:
        server = _Server(self.config(app))

        def should_exit() -> None:
            server.should_exit = True

        async with stopping_on(stop, should_exit):
            await server.serve(sockets=sockets)
