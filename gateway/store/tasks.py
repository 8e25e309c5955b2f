"""Background tasks, kept referenced (the event loop holds only weak references, so an
unreferenced task can vanish mid-run) and never failing silently:

- ``Supervisor``: a task that must keep running (the usage and counter writers), restarted
  with backoff when it crashes, the crash logged. A body that returns is done.
- ``spawn``: a one-shot task (settling a stream's usage, closing dropped state), its error
  logged."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Coroutine

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


_running: set[asyncio.Task[Any]] = set()  # one-shot tasks of this process, referenced until done


def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    """Run ``coro`` in the background on the running loop: the task is kept referenced until
    it ends (the loop holds only weak references), and an error it ends with is logged, not
    lost in "Task exception was never retrieved"."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("task_failed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}")
