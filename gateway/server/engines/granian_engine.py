"""granian (Rust: hyper on tokio), embedded on the gateway's event loop through its public
``granian.server.embed.Server`` (which granian itself calls experimental). HTTP/1.1 and HTTP/2
(prior knowledge) on one port.

What it gives of the gateway's promises, through its own options: server.header_timeout is
hyper's header read timeout (it starts at a connection's first byte: a connection that sends
nothing is not closed by it), server.max_connections is granian's ``backpressure`` (a
connection beyond it waits in the listen backlog rather than getting 503). granian binds its
own socket, with SO_REUSEPORT, in every worker: ``sockets()`` only checks that the port is free,
so that a busy port is one line from the caller.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...graph.graph import ServerSettings
from .common import EngineError, bind_label, bind_socket, stopping_on


class Granian:
    name = "granian"

    def __init__(self, host: str, port: int, settings: ServerSettings = ServerSettings()):
        try:
            import granian  # noqa: F401
        except ImportError:
            raise EngineError("server.engine granian needs granian: "
                              "pip install 'bodhi-gateway[granian]'") from None
        self.host, self.port = host, port
        self.settings = settings
        self.bind = [bind_label(host, port)]

    def sockets(self) -> Any:
        bind_socket(self.host, self.port).close()  # OSError when taken
        return []

    def server(self, app: Any) -> Any:
        from granian.constants import HTTPModes, Interfaces
        from granian.http import HTTP1Settings
        from granian.log import LogLevels
        from granian.server.embed import Server

        return Server(
            app, address=self.host.strip("[]"), port=self.port, interface=Interfaces.ASGI,
            http=HTTPModes.auto, backlog=1024, backpressure=self.settings.max_connections,
            http1_settings=HTTP1Settings(header_read_timeout=int(self.settings.header_timeout * 1000),
                                         keep_alive=True),
            log_level=LogLevels.error)  # its own errors only, not "embedded is experimental"

    async def serve(self, app: Any, sockets: Any, stop: asyncio.Event) -> None:
        server = self.server(app)
        async with stopping_on(stop, server.stop):
            await server.serve()
