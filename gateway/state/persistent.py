"""Memory counters persisted to SQLite: the embedded default (`server.state: sqlite`), so
budgets and rate windows survive a restart. The hot path stays in memory; a background task
writes what changed once a second (in a worker thread), and at shutdown.

Each worker process owns its rows (``worker`` column): with `--workers N` every worker enforces
its share of each limit, and after a restart worker i reloads what worker i had counted."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time

from .. import datadir
from ..logs import get_logger
from .counters import Limit, MemoryCounters
from .flusher import PeriodicFlush

log = get_logger("gateway.state")


class SqliteCounters(PeriodicFlush, MemoryCounters):
    backend = "sqlite"

    def __init__(self, path: str, share: int = 1, worker: int = 0):
        super().__init__(share)
        self.path = path
        self.worker = worker
        self._dirty: set = set()
        self._load()

    def _db(self) -> sqlite3.Connection:
        db = datadir.connect(self.path, timeout=5)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS worker_counters (worker INTEGER NOT NULL,"
                   " key TEXT NOT NULL, bucket INTEGER NOT NULL, amount REAL NOT NULL,"
                   " updated REAL NOT NULL, PRIMARY KEY (worker, key, bucket))")
        return db

    def _load(self) -> None:
        if not os.path.exists(self.path):
            return
        db = self._db()
        try:
            rows = db.execute("SELECT key, bucket, amount FROM worker_counters WHERE worker = ?",
                              (self.worker,))
            for key, bucket, amount in rows:
                if bucket < 0:
                    self.totals[key] = amount
                else:
                    self.buckets[(key, bucket)] = amount
        finally:
            db.close()

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
        rows = [(self.worker, key, bucket, self.totals.get(key, 0.0) if bucket < 0
                 else self.buckets.get((key, bucket), 0.0), time.time()) for key, bucket in dirty]
        try:
            await asyncio.to_thread(self._write, rows)
        except (sqlite3.Error, OSError) as exc:  # a full disk, a lost data dir, EMFILE
            self._dirty |= dirty  # try again next time; nothing is lost from memory
            log.error("state_flush_failed", path=self.path, error=str(exc))

    def _write(self, rows: list) -> None:
        db = self._db()
        try:
            with db:
                db.executemany("INSERT INTO worker_counters (worker, key, bucket, amount, updated)"
                               " VALUES (?,?,?,?,?) ON CONFLICT(worker, key, bucket) DO UPDATE"
                               " SET amount = excluded.amount, updated = excluded.updated", rows)
                db.execute("DELETE FROM worker_counters WHERE bucket >= 0 AND updated < ?",
                           (time.time() - 40 * 86400,))
        finally:
            db.close()

