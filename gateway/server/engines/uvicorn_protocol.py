"""uvicorn's httptools protocol with a header timeout (server.header_timeout).

uvicorn times out idle keep-alive connections, but cancels that timer on the first byte
received and sets none while a request head arrives, nor before the first byte: a client that
sends its headers one byte at a time, or nothing at all, holds the connection for as long as it
likes. Here a connection must deliver a whole request head within ``header_timeout`` of opening
(or of starting a request), else it is closed.

uvicorn takes a protocol class as ``Config(http=...)``; this one extends the class its
``http="httptools"`` names, through the asyncio.Protocol methods and httptools' parser
callbacks only (it keeps its own transport and timer).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._gateway_transport = transport
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        if not self._gateway_transport.is_closing():
            self._gateway_transport.close()


def with_header_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})
