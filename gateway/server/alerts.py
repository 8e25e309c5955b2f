"""Alert webhooks: events (gateway/events.py) POSTed as JSON to the webhooks of
`observability.alerts` in the running config.

Nothing here may slow a request: the emitter calls ``offer`` on the request path, which only
checks the cool-down and puts the event on a bounded queue (full: the event is counted as
dropped and logged, never waited for). A background task delivers, several at a time, so a
slow or dead webhook delays only its own deliveries. Each delivery is retried with
exponential backoff on a 5xx answer, a 429, a timeout or a connection error; any other 4xx is
final. Redirects are not followed: events go to the configured URLs only.

Every body is signed when the webhook has a ``secret``: ``x-gateway-signature:
sha256=HEX`` where HEX is HMAC-SHA256(secret, TIMESTAMP + "." + body) and TIMESTAMP is the
``x-gateway-timestamp`` header (unix seconds), so a receiver can refuse old replays.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import socket
import time
import uuid
from typing import Callable

import aiohttp
import orjson

from .. import __version__
from ..events import EMITTER, AlertWebhook, Event
from ..logs import get_logger
from ..units import iso_utc
from .reload import GraphHolder

log = get_logger("gateway.alerts")

MAX_QUEUE = 1000  # events waiting for delivery; beyond it they are dropped (and counted)
CONCURRENCY = 8  # deliveries in flight at once
BACKOFF = 0.5  # seconds before the first retry; doubled each time, with jitter
MAX_BACKOFF = 30.0
STOP_GRACE = 2.0  # seconds a shutdown waits for deliveries still queued or in flight


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The x-gateway-signature value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class AlertDispatcher:
    """Subscribed to the process's events while the app runs (``start`` / ``stop``)."""

    def __init__(self, holder: GraphHolder, *, clock: Callable[[], float] = time.monotonic,
                 max_queue: int = MAX_QUEUE, backoff: float = BACKOFF):
        self.holder = holder
        self.clock = clock
        self.max_queue = max_queue
        self.backoff = backoff
        self.counts = {"queued": 0, "delivered": 0, "failed": 0, "dropped": 0, "suppressed": 0}
        self._last_sent: dict[tuple[str, str, str], float] = {}
        self._queue: asyncio.Queue[tuple[AlertWebhook, bytes]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(self.max_queue)
        self._worker = self._loop.create_task(self._run())
        EMITTER.subscribe(self.offer)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        EMITTER.unsubscribe(self.offer)
        if self._queue is not None:
            try:
                await asyncio.wait_for(self._queue.join(), grace)
            except asyncio.TimeoutError:
                log.warning("alerts_undelivered_at_shutdown", waiting=self._queue.qsize(),
                            in_flight=len(self._deliveries))
        tasks = [t for t in (self._worker, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # -- on the emitter's side: queue only ---------------------------------------------------

    def offer(self, event: Event) -> None:
        """The emitter's sink. Called from the event loop normally; from another thread the
        event is handed to the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._enqueue(event)
        else:
            loop.call_soon_threadsafe(self._enqueue, event)

    def _enqueue(self, event: Event) -> None:
        graph = self.holder.current
        if graph is None or self._queue is None:
            return
        now = self.clock()
        for hook in graph.alerts:
            if not hook.wants(event.kind):
                continue
            key = (hook.url, event.kind, event.subject)
            last = self._last_sent.get(key)
            if last is not None and now - last < hook.cooldown:
                self.counts["suppressed"] += 1
                continue
            body = graph.scrubber.body(orjson.dumps({
                "id": uuid.uuid4().hex,
                "event": event.kind,
                "subject": event.subject,
                "at": iso_utc(event.at),
                "gateway": graph.settings.name or socket.gethostname(),
                "config_version": graph.version,
                "details": dict(event.details),
            }, default=str))
            try:
                self._queue.put_nowait((hook, body))
            except asyncio.QueueFull:
                self.counts["dropped"] += 1
                log.warning("alert_dropped", kind=event.kind, subject=event.subject,
                            reason=f"{self.max_queue} alerts already wait for delivery")
                continue
            self.counts["queued"] += 1
            self._last_sent[key] = now
        if len(self._last_sent) > 10 * self.max_queue:  # forget cool-downs long over
            longest = max((h.cooldown for h in graph.alerts), default=0.0)
            self._last_sent = {k: t for k, t in self._last_sent.items() if now - t < longest}

    # -- delivery ------------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._queue is not None
        slots = asyncio.Semaphore(CONCURRENCY)
        while True:
            hook, body = await self._queue.get()
            await slots.acquire()
            task = asyncio.get_running_loop().create_task(self._deliver(hook, body))
            self._deliveries.add(task)

            def finished(task: asyncio.Task[None]) -> None:
                self._deliveries.discard(task)
                slots.release()
                assert self._queue is not None
                self._queue.task_done()

            task.add_done_callback(finished)

    async def _deliver(self, hook: AlertWebhook, body: bytes) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"user-agent": f"bodhi-gateway/{__version__}"})
        event = orjson.loads(body)
        problem = ""
        for attempt in range(1, hook.attempts + 1):
            timestamp = str(int(time.time()))
            headers = {"content-type": "application/json", "x-gateway-event": event["event"],
                       "x-gateway-delivery": event["id"], "x-gateway-timestamp": timestamp}
            if hook.secret:
                headers["x-gateway-signature"] = signature(hook.secret, timestamp, body)
            try:
                async with self._session.post(hook.url, data=body, headers=headers,
                                              allow_redirects=False,
                                              timeout=aiohttp.ClientTimeout(total=hook.timeout)) as resp:
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                problem = type(exc).__name__
            else:
                if status < 300:
                    self.counts["delivered"] += 1
                    log.info("alert_delivered", kind=event["event"], subject=event["subject"],
                             webhook=_host(hook.url), attempts=attempt)
                    return
                problem = f"HTTP {status}"
                if status < 500 and status != 429:
                    break  # the receiver refuses this body: sending it again will not help
            if attempt < hook.attempts:
                delay = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        self.counts["failed"] += 1
        log.error("alert_undelivered", kind=event["event"], subject=event["subject"],
                  webhook=_host(hook.url), error=problem)


def _host(url: str) -> str:
    """Where a webhook points, for logs: scheme and host only (its path may hold a token)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].rpartition('@')[2]}"
