"""A background writer for state kept in memory on the hot path and written out once a second
(usage, persisted counters): started lazily on the event loop, supervised (a crash is logged
and the loop restarted), flushed once more at close.

``every`` (seconds between flushes) and ``tick`` (how to wait them) are injectable per
instance, so a test can drive flushes without sleeping."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from ..store.tasks import Supervisor

FLUSH_EVERY = 1.0


class PeriodicFlush:
    every: float = FLUSH_EVERY
    tick: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)
    _supervisor: Supervisor | None = None

    def schedule(self) -> None:
        """Make sure the writer runs (called from the event loop, on the first change)."""
        if self._supervisor is None:
            self._supervisor = Supervisor(f"flush:{type(self).__name__}", self._run)
        self._supervisor.start()

    async def _run(self) -> None:
        while True:
            await self.tick(self.every)
            await self.flush()

    async def flush(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        if self._supervisor is not None:
            await self._supervisor.stop()
        await self.flush()
