"""What the engines share: the error, the shutdown grace, binding a listening socket, and the
stop watcher."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

SHUTDOWN_GRACE = 2  # seconds the engine waits for connections once the gateway has drained


class EngineError(Exception):
    """The chosen engine cannot run; the message says what to install."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket, bound here rather than by the engine, so that a busy port is
    one line from the caller (an engine may log and exit instead) and forked workers share
    it. Inheritable: a worker process uses the same descriptor."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted ones inherit it
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def bind_label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.asynccontextmanager
async def stopping_on(stop: asyncio.Event, stop_server: Callable[[], None]):
    """Call ``stop_server`` once ``stop`` is set, for as long as the block runs."""
    async def watch() -> None:
        await stop.wait()
        stop_server()

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
