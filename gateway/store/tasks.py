"""Background tasks that must keep running (the usage and counter writers): kept referenced,
so the event loop cannot garbage-collect them, and restarted with backoff when they crash,
with the crash logged. A task that returns is done and not restarted."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

from ..logs import get_logger

log = get_logger("gateway.store")

FIRST_DELAY = 0.1   # seconds before the first restart
MAX_DELAY = 30.0    # the backoff doubles up to this


class Supervisor:
    """Runs ``body()`` as one task on the running loop; if it raises, logs the error and
    runs it again after ``delay`` (doubling up to ``max_delay``, back to the first delay
    once a run lasted longer than ``max_delay``). ``sleep`` and ``clock`` are injectable so
    tests need not wait."""

    def __init__(self, name: str, body: Callable[[], Awaitable[None]], *,
                 first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.body = body
        self.first_delay, self.max_delay = first_delay, max_delay
        self.sleep, self.clock = sleep, clock
        self.restarts = 0
        self.task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        """Start the task on the running loop unless it runs already."""
        if not self.running:
            self.task = asyncio.get_running_loop().create_task(self._supervise(),
                                                               name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait for it to end."""
        task, self.task = self.task, None
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait([task])  # raises only if our caller is cancelled meanwhile

    async def _supervise(self) -> None:
        delay = self.first_delay
        while True:
            started = self.clock()
            try:
                await self.body()
                return
            # Deliberately broad: this is the one place that must outlive any bug in the
            # body; the error is logged with its type, and the body restarted.
            except Exception as exc:  # noqa: BLE001
                if self.clock() - started > self.max_delay:
                    delay = self.first_delay
                self.restarts += 1
                log.error("task_crashed", task=self.name, error=f"{type(exc).__name__}: {exc}",
                          restart_in=delay, restarts=self.restarts)
            await self.sleep(delay)
            delay = min(delay * 2, self.max_delay)
