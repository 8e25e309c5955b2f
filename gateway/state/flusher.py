"""A background writer for state kept in memory on the hot path and written out once a second
(usage, persisted counters): started lazily on the event loop, flushed once more at close."""

from __future__ import annotations

import asyncio

FLUSH_EVERY = 1.0


class PeriodicFlush:
    _task: asyncio.Task | None = None

    def schedule(self) -> None:
        """Make sure the writer runs (called from the event loop, on the first change)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush()

    async def flush(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.flush()
