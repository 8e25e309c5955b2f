"""hypercorn (pure Python: h11 for HTTP/1.1, h2 for HTTP/2 over cleartext), through its public
``hypercorn.asyncio.serve``. The gateway binds the socket (common.bind_socket) and hands it
over as an ``fd://`` bind; server.max_connections is request_cap.RequestCap, since hypercorn
has no limit of its own."""

from __future__ import annotations

import asyncio
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

from ...graph.graph import ServerSettings
from .common import SHUTDOWN_GRACE, bind_label, bind_socket
from .request_cap import RequestCap


class Hypercorn:
    name = "hypercorn"

    def __init__(self, host: str, port: int, settings: ServerSettings = ServerSettings()):
        self.host, self.port = host, port
        self.settings = settings
        self.bind = [bind_label(host, port)]

    def config(self, sockets: list[Any]) -> Config:
        config = Config()
        # hypercorn owns and closes the descriptor from here on (in a forked worker, its copy)
        config.bind = [f"fd://{sock.detach()}" for sock in sockets]
        config.accesslog = None
        config.errorlog = "-"
        config.loglevel = "WARNING"
        # hypercorn's idle timer runs from the connection's start until a whole request head
        # has arrived, and between requests: a slow-header client is closed after it.
        config.keep_alive_timeout = self.settings.header_timeout
        config.graceful_timeout = SHUTDOWN_GRACE  # after the gateway's own drain
        config.h11_max_incomplete_size = 64 * 1024
        return config

    def sockets(self) -> Any:
        return [bind_socket(self.host, self.port)]

    async def serve(self, app: Any, sockets: Any, stop: asyncio.Event) -> None:
        """hypercorn installs no signal handlers when given a shutdown trigger: the gateway's
        own (serve.py) stay in charge."""
        capped = RequestCap(app, self.settings.max_connections)
        await serve(capped, self.config(sockets), shutdown_trigger=stop.wait)
