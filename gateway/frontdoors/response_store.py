"""The Responses door's conversations in ``responses.db`` (store/responses_db.py), one store
per process, kept across reloads.

Lookups read the file directly (WAL: indexed rows, no waiting on the writer). Writes go to the
store's Writer thread, so a request never waits on the disk; a response queued for writing is
readable at once (a continuation sent right after the answer finds it). Expired rows are
swept by a supervised background task, once when the store is first used and then every
``every`` seconds; until then they are already invisible to every lookup.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from concurrent.futures import Future
from typing import Awaitable, Callable, TypeVar

from ..errors import GatewayError, storage_reason
from ..logs import get_logger
from ..store import responses_db
from ..store.responses_db import Stored
from ..store.tasks import Supervisor
from ..store.writer import Writer

log = get_logger("gateway.responses")

DEFAULT_RETENTION = 30 * 86400.0  # responses.retention
SWEEP_EVERY = 600.0

T = TypeVar("T")


def unavailable(path: str, exc: Exception) -> GatewayError:
    """A damaged, locked or unreadable responses.db: a clear 503 (never an empty answer that
    would pass for 'not found')."""
    log.error("response_store_unavailable", path=path, error=f"{type(exc).__name__}: {exc}")
    return GatewayError(503, f"the stored responses cannot be read now ({storage_reason(exc)})",
                        type="server_error", code="storage_unavailable")


class ResponseStore:
    every: float = SWEEP_EVERY
    tick: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

    def __init__(self, path: str, clock: Callable[[], float] = time.time):
        self.path = path
        self.clock = clock
        self.retention = DEFAULT_RETENTION
        self.swept = 0  # rows the last sweep deleted
        self.writer = Writer(lambda: responses_db.connect(path), name=f"responses-writer:{path}")
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._pending: dict[str, Stored] = {}  # queued for the writer, readable meanwhile
        self._sweeper: Supervisor | None = None

    def configure(self, retention: float) -> None:
        """The retention of the running config (a reload may change it; stored rows keep
        theirs)."""
        self.retention = retention

    # -- reads (on the event loop: indexed rows) --------------------------------------------

    def chain(self, owner: str, id: str) -> list[Stored]:
        """Response ``id`` of ``owner`` and those it continued, oldest first; [] when unknown
        (never stored, expired, deleted, or another key's)."""
        self._schedule()
        now = self.clock()
        newest_first: list[Stored] = []
        current: str | None = id
        while current is not None and (row := self._pending.get(current)) is not None:
            if row.owner != owner or row.expires <= now:
                current = None
                break
            newest_first.append(row)
            current = row.previous_id
        if current is not None:
            at = current
            stored = self._read(lambda db: responses_db.chain(db, owner, at, now))
            newest_first.extend(reversed(stored))
        newest_first.reverse()
        return newest_first if newest_first and newest_first[-1].id == id else []

    def get(self, owner: str, id: str) -> Stored | None:
        self._schedule()
        now = self.clock()
        row = self._pending.get(id)
        if row is not None:
            return row if row.owner == owner and row.expires > now else None
        return self._read(lambda db: responses_db.get(db, owner, id, now))

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        with self._reader_lock:
            try:
                if self._reader is None:
                    self._reader = responses_db.reader(self.path)
                return query(self._reader)
            except (sqlite3.Error, OSError) as exc:
                raise unavailable(self.path, exc) from None

    # -- writes (the writer thread) -----------------------------------------------------------

    def put(self, id: str, owner: str, previous_id: str | None, input: bytes,
            response: bytes) -> Future[None]:
        now = self.clock()
        row = Stored(id, owner, previous_id, input, response, now, now + self.retention)
        self._pending[id] = row
        future = self.writer.submit(lambda db: responses_db.put(db, row))
        future.add_done_callback(lambda done: self._written(row, done))
        self._schedule()
        return future

    async def delete(self, owner: str, id: str) -> bool:
        row = self._pending.get(id)
        queued = row is not None and row.owner == owner
        if queued:
            self._pending.pop(id, None)
        try:
            found = await self.writer.run(lambda db: responses_db.delete(db, owner, id))
        except (sqlite3.Error, OSError) as exc:
            raise unavailable(self.path, exc) from None
        return found or queued

    async def sweep(self) -> int:
        now = self.clock()
        self.swept = await self.writer.run(lambda db: responses_db.sweep(db, now))
        if self.swept:
            log.info("responses_swept", deleted=self.swept)
        return self.swept

    def _written(self, row: Stored, done: Future[None]) -> None:
        """In the writer thread: the row is in the file now (or failed to get there)."""
        if self._pending.get(row.id) is row:
            self._pending.pop(row.id, None)
        exc = done.exception()
        if exc is not None:
            log.error("response_store_failed", error=f"{type(exc).__name__}: {exc}")

    # -- background -----------------------------------------------------------------------

    def _schedule(self) -> None:
        """Make sure the sweeper runs (called on the event loop, at first use)."""
        if self._sweeper is None:
            self._sweeper = Supervisor(f"responses-sweep:{self.path}", self._sweep_forever)
        if not self._sweeper.running:
            try:
                self._sweeper.start()
            except RuntimeError:  # no running loop (a test calling from a thread)
                pass

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except (sqlite3.Error, OSError) as exc:
                log.error("responses_sweep_failed", path=self.path, error=str(exc))
            await self.tick(self.every)

    async def aclose(self) -> None:
        if self._sweeper is not None:
            await self._sweeper.stop()
        await self.writer.aclose()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
