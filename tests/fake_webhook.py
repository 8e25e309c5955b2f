"""A fake alert receiver on a loopback port: records every POST (headers, raw body), checks
the x-gateway-signature with the secret it was given, and answers what it is told to
(a status, after a delay)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .background_app import BackgroundApp


@dataclass
class Delivery:
    headers: dict[str, str]
    raw: bytes
    at: float

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.raw)


class FakeWebhook(BackgroundApp):
    def __init__(self, secret: str = "") -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.secret = secret
        self.deliveries: list[Delivery] = []
        self.delay = 0.0  # before every answer
        self._statuses: deque[int] = deque()

    def answer(self, *statuses: int) -> None:
        """The next deliveries get these statuses (then 200)."""
        self._statuses.extend(statuses)

    def signature_ok(self, delivery: Delivery) -> bool:
        """What a receiver does: recompute the HMAC of timestamp + "." + body."""
        timestamp = delivery.headers["x-gateway-timestamp"]
        mac = hmac.new(self.secret.encode(), timestamp.encode() + b"." + delivery.raw,
                       hashlib.sha256).hexdigest()
        return hmac.compare_digest(delivery.headers.get("x-gateway-signature", ""),
                                   "sha256=" + mac)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._hook)

    async def _hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.deliveries.append(Delivery({k.lower(): v for k, v in request.headers.items()}, raw,
                                        time.monotonic()))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self._statuses.popleft() if self._statuses else 200
        return web.Response(status=status, text="ok" if status < 300 else "no")
