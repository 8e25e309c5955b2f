"""server.max_connections for an engine with no limit of its own (hypercorn): an ASGI wrapper
that answers 503 to an HTTP request arriving while the cap's number of requests are in
progress in this worker, instead of queueing it behind them.

It counts connections with a request in progress: an ASGI app does not see a connection
between requests. Those are bounded in time instead, by the engine's idle timer
(server.header_timeout), so what the cap leaves out cannot pile up for long.
"""

from __future__ import annotations

from typing import Any

BUSY_BODY = (b'{"error":{"message":"the gateway has server.max_connections connections open; '
             b'retry shortly","type":"service_unavailable","code":"too_many_connections",'
             b'"param":null}}')
BUSY_HEADERS = [(b"content-type", b"application/json"), (b"connection", b"close"),
                (b"retry-after", b"1"), (b"content-length", str(len(BUSY_BODY)).encode())]


class RequestCap:
    def __init__(self, app: Any, cap: int):
        self.app = app
        self.cap = cap
        self.in_progress = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.in_progress >= self.cap:
            await send({"type": "http.response.start", "status": 503, "headers": BUSY_HEADERS})
            await send({"type": "http.response.body", "body": BUSY_BODY})
            return
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1
