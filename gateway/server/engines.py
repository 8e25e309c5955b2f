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


class EngineError(Exception):
    """The chosen engine cannot run; the message says what to install."""


class Hypercorn:
    name = "hypercorn"

    def __init__(self, host: str, port: int):
        config = HypercornConfig()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = "-"
        config.loglevel = "WARNING"
        config.keep_alive_timeout = 75
        config.graceful_timeout = 10
        config.h11_max_incomplete_size = 64 * 1024
        self.config = config
        self.bind = config.bind

    def sockets(self) -> Any:
        """Sockets bound once, before forking workers that share them."""
        return self.config.create_sockets()

    async def serve(self, app, sockets: Any, stop: asyncio.Event) -> None:
        wrapped = wrap_app(app, self.config.wsgi_max_body_size, "asgi")
        await worker_serve(wrapped, self.config, sockets=sockets, shutdown_trigger=stop.wait)


class Uvicorn:
    name = "uvicorn"

    def __init__(self, host: str, port: int):
        try:
            import uvicorn
        except ImportError:
            raise EngineError("server.engine uvicorn needs uvicorn: "
                              "pip install 'bodhi-gateway[uvicorn]'") from None
        self.uvicorn = uvicorn
        self.host, self.port = host, port
        self.bind = [f"{host}:{port}"]

    def _config(self, app=None):
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
        return self.uvicorn.Config(app, host=self.host, port=self.port, http=http, lifespan="on",
                                   log_level="warning", access_log=False, timeout_keep_alive=75,
                                   timeout_graceful_shutdown=10, server_header=False)

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
        server = self.uvicorn.Server(self._config(app))

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


def engine(name: str, host: str, port: int):
    return ENGINES[name](host, port)
