"""Graceful shutdown: on SIGTERM the gateway stops being ready, lets what is in flight finish
for `server.drain_timeout`, then ends the streams still open with an SSE error event at an
event boundary (never mid-chunk) before the engine closes the connections.

The listener stays open while draining: a load balancer that has not yet seen /readyz go 503
may still send requests, and they are served. One Drain per process (each worker has its own).
"""

from __future__ import annotations

import asyncio
import time

from ..logs import get_logger

log = get_logger("gateway.server")


class OpenStream:
    """One response stream being relayed. ``waiting`` while it awaits the upstream: then only
    cancelling its task can end it in time; otherwise it sees ``stopping`` after its next
    chunk."""

    __slots__ = ("task", "waiting", "stopping")

    def __init__(self) -> None:
        self.task = asyncio.current_task()
        self.waiting = False
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True
        if self.waiting and self.task is not None:
            self.task.cancel("gateway shutting down")


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self.timeout = 0.0
        self.in_flight = 0
        self.streams: set[OpenStream] = set()
        self._idle: asyncio.Event | None = None

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    def open_stream(self) -> OpenStream:
        stream = OpenStream()
        self.streams.add(stream)
        return stream

    def close_stream(self, stream: OpenStream) -> None:
        self.streams.discard(stream)

    async def run(self, timeout: float, grace: float = 2.0) -> None:
        """Drain: wait up to ``timeout`` for requests in flight, then stop the open streams and
        give them ``grace`` to write their error event."""
        self.draining, self.timeout = True, timeout
        self._idle = asyncio.Event()
        if self.in_flight == 0:
            self._idle.set()
        started = time.monotonic()
        log.info("draining", in_flight=self.in_flight, streams=len(self.streams),
                 drain_timeout=timeout)
        if not await _wait(self._idle, timeout):
            log.warning("drain_timeout", in_flight=self.in_flight, streams=len(self.streams),
                        after_s=round(time.monotonic() - started, 3))
            for stream in list(self.streams):
                stream.stop()
            await _wait(self._idle, grace)
        log.info("drained", in_flight=self.in_flight,
                 after_s=round(time.monotonic() - started, 3))


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        return False
    return True


DRAIN = Drain()
