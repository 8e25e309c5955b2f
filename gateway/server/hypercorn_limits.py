"""A cap on hypercorn's open client connections (server.max_connections), which hypercorn
itself does not have: a connection beyond the cap gets a 503 and is closed, instead of holding
a file descriptor and memory like the rest. uvicorn has this built in (limit_concurrency).

hypercorn builds one TCPServer per accepted connection inside worker_serve, with no hook to
pass another class; the gateway swaps in this subclass for its own process (``install``).
"""

from __future__ import annotations

import asyncio
import contextlib

import hypercorn.asyncio.run as hypercorn_run
from hypercorn.asyncio.tcp_server import TCPServer

_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
         b"connection: close\r\nretry-after: 1\r\ncontent-length: %d\r\n\r\n%s")
_BODY = (b'{"error":{"message":"the gateway has server.max_connections connections open; '
         b'retry shortly","type":"service_unavailable","code":"too_many_connections",'
         b'"param":null}}')


class CappedTCPServer(TCPServer):
    cap = 1000
    header_timeout = 10.0
    open = 0

    async def run(self) -> None:
        cls = CappedTCPServer
        if cls.open >= cls.cap:
            await self._refuse()
            return
        cls.open += 1
        try:
            await super().run()
        finally:
            cls.open -= 1

    async def _refuse(self) -> None:
        """Read the request head first: closing with unread bytes would reset the connection
        and the client might never see the 503."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), self.header_timeout)
            self.writer.write(_BUSY % (len(_BODY), _BODY))
            await self.writer.drain()
        with contextlib.suppress(Exception):
            self.writer.close()
            await self.writer.wait_closed()


def install(max_connections: int, header_timeout: float) -> None:
    CappedTCPServer.cap = max_connections
    CappedTCPServer.header_timeout = header_timeout
    hypercorn_run.TCPServer = CappedTCPServer  # type: ignore[misc]  # hypercorn has no hook for it
