"""The HTTP servers the gateway can run on. hypercorn is the default; uvicorn (with httptools)
is an opt-in alternative (`server.engine: uvicorn`, `pip install 'bodhi-gateway[uvicorn]'`) that
parses HTTP/1.1 in C and roughly halves the server's own cost per request (docs/performance.md).
Both serve the same ASGI app; reload, signals and workers work the same on either."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.utils import wrap_app

from ..graph.graph import ServerSettings
from .hypercorn_limits import install as install_connection_cap

SHUTDOWN_GRACE = 2  # seconds the engine waits for connections once the gateway has drained


class EngineError(Exception):
    """The chosen engine cannot run; the message says what to install."""


class Hypercorn:
    name = "hypercorn"

    def __init__(self, host: str, port: int, settings: ServerSettings = ServerSettings()):
        config = HypercornConfig()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = "-"
        config.loglevel = "WARNING"
        # hypercorn's idle timer runs from the connection's start until a whole request head
        # has arrived, and between requests: a slow-header client is closed after it.
        config.keep_alive_timeout = settings.header_timeout
        config.graceful_timeout = SHUTDOWN_GRACE  # after the gateway's own drain
        config.h11_max_incomplete_size = 64 * 1024
        self.config = config
        self.settings = settings
        self.bind = config.bind

    def sockets(self) -> Any:
        """Sockets bound once, before forking workers that share them."""
        return self.config.create_sockets()

    async def serve(self, app, sockets: Any, stop: asyncio.Event) -> None:
        """hypercorn installs no signal handlers when given a shutdown trigger: the gateway's
        own (serve.py) stay in charge."""
        install_connection_cap(self.settings.max_connections, self.settings.header_timeout)
        wrapped = wrap_app(app, self.config.wsgi_max_body_size, "asgi")
        await worker_serve(wrapped, self.config, sockets=sockets, shutdown_trigger=stop.wait)


class Uvicorn:
    name = "uvicorn"

    def __init__(self, host: str, port: int, settings: ServerSettings = ServerSettings()):
        try:
            import uvicorn
        except ImportError:
            raise EngineError("server.engine uvicorn needs uvicorn: "
                              "pip install 'bodhi-gateway[uvicorn]'") from None
        self.uvicorn = uvicorn
        self.host, self.port = host, port
        self.settings = settings
        self.bind = [f"{host}:{port}"]

    def _config(self, app=None):
        http = "h11"
        if importlib.util.find_spec("httptools"):
            from .uvicorn_protocol import with_header_timeout
            http = with_header_timeout(self.settings.header_timeout)
        return self.uvicorn.Config(app, host=self.host, port=self.port, http=http, lifespan="on",
                                   log_level="warning", access_log=False, timeout_keep_alive=75,
                                   timeout_graceful_shutdown=SHUTDOWN_GRACE, server_header=False,
                                   # uvicorn counts the new connection too: N are served
                                   limit_concurrency=self.settings.max_connections + 1)

    def sockets(self) -> Any:
        """Bound here rather than by uvicorn's bind_socket, which logs and exits on OSError:
        the caller says why in one line."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host.strip("[]"), self.port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        return [sock]

    async def serve(self, app, sockets: Any, stop: asyncio.Event) -> None:
        class Server(self.uvicorn.Server):  # type: ignore[name-defined]  # uvicorn loads lazily
            @contextlib.contextmanager
            def capture_signals(self):
                yield  # the gateway's own handlers (serve.py) stay in charge: drain, then stop

        server = Server(self._config(app))

        async def stop_on_signal() -> None:
            await stop.wait()
            server.should_exit = True

        watcher = asyncio.create_task(stop_on_signal())
        try:
            await server.serve(sockets=sockets)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


ENGINES = {"hypercorn": Hypercorn, "uvicorn": Uvicorn}


def engine(name: str, host: str, port: int, settings: ServerSettings = ServerSettings()):
    return ENGINES[name](host, port, settings)
