"""Memory counters persisted to SQLite: the embedded default (`server.state: sqlite`), so
budgets and rate windows survive a restart. The hot path stays in memory; a background task
writes what changed to ``state.db`` once a second (through the store's Writer thread),
and at shutdown.

Each worker process owns its rows (``worker`` column): with `--workers N` every worker enforces
its share of each limit, and after a restart worker i reloads what worker i had counted."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from ..logs import get_logger
from ..store import state_db
from ..store.writer import Writer
from .counters import Limit, MemoryCounters
from .flusher import PeriodicFlush

log = get_logger("gateway.state")


class SqliteCounters(PeriodicFlush, MemoryCounters):
    backend = "sqlite"

    def __init__(self, path: str, share: int = 1, worker: int = 0):
        super().__init__(share)
        self.path = path
        self.worker = worker
        self._dirty: set[tuple[str, int]] = set()
        self.writer = Writer(lambda: state_db.connect(path), name=f"state-writer:{path}")
        self._load()

    def _load(self) -> None:
        for key, bucket, amount in state_db.load(self.path, self.worker):
            if bucket < 0:
                self.totals[key] = amount
            else:
                self.buckets[(key, bucket)] = amount

    def adjust_now(self, items: list[tuple[Limit, float]], now: float) -> None:
        super().adjust_now(items, now)
        for limit, amount in items:
            if amount:
                self._dirty.add((limit.key, int(now // limit.window) if limit.window else -1))
        self.schedule()

    async def flush(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        now = time.time()
        rows = [(self.worker, key, bucket, self.totals.get(key, 0.0) if bucket < 0
                 else self.buckets.get((key, bucket), 0.0), now) for key, bucket in dirty]
        try:
            # shielded: a flush cancelled at shutdown still lands (close waits for it)
            await asyncio.shield(self.writer.run(lambda db: state_db.save(db, rows, now)))
        except (sqlite3.Error, OSError) as exc:  # a full disk, a lost data dir, EMFILE
            self._dirty |= dirty  # try again next time; nothing is lost from memory
            log.error("state_flush_failed", path=self.path, error=str(exc))

    async def aclose(self) -> None:
        await super().aclose()
        await self.writer.aclose()
