"""uvicorn's httptools protocol with a header timeout (server.header_timeout) and a body
timeout (server.body_timeout).

uvicorn times out idle keep-alive connections, but cancels that timer on the first byte
received and sets none while a request head arrives, nor before the first byte: a client that
sends its headers one byte at a time, or nothing at all, holds the connection for as long as it
likes. Here a connection must deliver a whole request head within ``header_timeout`` of opening
(or of starting a request), else it is closed.

Nor does uvicorn time a request body: a client that sends a head announcing a body and then
stops holds the connection (and a handler waiting for the body) for ever. Here a connection
that sends nothing of an unfinished body for ``body_timeout`` is closed; the handler sees the
client gone, and the scope's BODY_TIMED_OUT says why (the request is logged 408). Time that
uvicorn itself stopped reading (flow control: the handler is behind) does not count. The timer
is armed only when a read ends mid-body, so a request that arrives whole costs a flag test.

uvicorn takes a protocol class as ``Config(http=...)``; this one extends the class its
``http="httptools"`` names, through the asyncio.Protocol methods and httptools' parser
callbacks only (it keeps its own transport and timer).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


BODY_TIMED_OUT = "gateway.body_timed_out"  # set in the request's scope when its body stopped


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 30.0
    _header_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _in_body = False  # a request head arrived, its body has not ended
    _body_seen = 0.0  # loop time of the last bytes received while in a body

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._gateway_transport = transport
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_body:  # this read ended mid-body: the body must go on arriving
            self._body_seen = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.body_timeout, self._body_check)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
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

    def _body_check(self) -> None:
        self._body_timer = None
        if not self._in_body or self._gateway_transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:  # uvicorn stopped reading, not the client sending
            self._body_seen = now
        idle = now - self._body_seen
        if idle < self.body_timeout:
            self._body_timer = self.loop.call_later(self.body_timeout - idle, self._body_check)
            return
        self.scope[BODY_TIMED_OUT] = True  # type: ignore[literal-required]  # a key of ours
        self._gateway_transport.close()


def with_timeouts(header: float, body: float) -> type[HeaderTimeoutProtocol]:
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,),
                {"header_timeout": header, "body_timeout": body})
