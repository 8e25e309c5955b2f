"""The embedded response-cache backend: ``cache.db`` in the data directory (store/cache_db.py).

Lookups read the file directly (WAL: one indexed row, no waiting on the writer). Everything
that writes goes to the store's Writer thread, so a request never waits on the disk: a new
entry is queued as it arrives; when entries were used and the hit/miss counts are kept in
memory and written once a second by a supervised flush, which also sweeps expired entries
and evicts the least recently used ones beyond ``max_entries`` / ``max_bytes``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from ..logs import get_logger
from ..store import cache_db
from ..store.cache_db import Entry
from ..store.writer import Writer
from .flusher import PeriodicFlush

if TYPE_CHECKING:
    from .vector_index import VectorIndex

log = get_logger("gateway.cache")

__all__ = ["Entry", "ResponseCacheBackend", "SqliteResponseCache"]


class ResponseCacheBackend(Protocol):
    """What the cache middleware needs of a backend (this module's, or redis_cache.py's)."""

    backend: str
    totals: dict[str, list[float]]  # namespace -> [hits, misses, saved tokens, saved USD], this process

    def configure(self, max_entries: int | None, max_bytes: int | None) -> None: ...

    async def get(self, namespace: str, key: str, now: float) -> Entry | None: ...

    def put(self, namespace: str, key: str, route: str, entry: Entry) -> Any: ...

    def count(self, namespace: str, hit: bool, saved_tokens: int = 0,
              saved_usd: float = 0.0) -> None: ...

    async def nearest(self, namespace: str, group: str, vector: Any) -> tuple[str, float] | None:
        """Semantic mode: the stored prompt of ``group`` closest to ``vector`` (a unit numpy
        vector) and its cosine similarity; None when the group is empty."""

    def put_vector(self, namespace: str, key: str, group: str, vector: Any, ttl: float) -> None: ...


def _zero() -> list[float]:
    return [0, 0, 0, 0.0]


class SqliteResponseCache(PeriodicFlush):
    backend = "sqlite"

    def __init__(self, path: str):
        self.path = path
        self.writer = Writer(lambda: cache_db.connect(path), name=f"cache-writer:{path}")
        self.max_entries: int | None = None
        self.max_bytes: int | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._used: dict[tuple[str, str], float] = {}
        # Entries queued for the writer, readable at once (a repeat right after the first
        # answer is a hit); each leaves when it is written.
        self._pending: dict[tuple[str, str], Entry] = {}
        self._counts: dict[str, list[float]] = defaultdict(_zero)  # not yet written
        self.totals: dict[str, list[float]] = defaultdict(_zero)  # this process, for /metrics
        self.swept = (0, 0)  # expired, evicted by the last sweep
        self._index: VectorIndex | None = None  # made on first semantic use (numpy)

    def configure(self, max_entries: int | None, max_bytes: int | None) -> None:
        """Bounds from the running config (a reload may change them)."""
        self.max_entries, self.max_bytes = max_entries, max_bytes

    # -- the request path ----------------------------------------------------------------

    async def get(self, namespace: str, key: str, now: float) -> Entry | None:
        return self.lookup(namespace, key, now)

    def lookup(self, namespace: str, key: str, now: float) -> Entry | None:
        entry = self._pending.get((namespace, key))
        if entry is not None:
            return entry if entry.expires > now else None
        with self._reader_lock:
            if self._reader is None:
                self._reader = cache_db.reader(self.path)
            entry = cache_db.get(self._reader, namespace, key, now)
        if entry is not None:
            self._used[(namespace, key)] = now
            self.schedule()
        return entry

    def put(self, namespace: str, key: str, route: str, entry: Entry) -> Future[None]:
        self._pending[(namespace, key)] = entry
        future = self.writer.submit(lambda db: cache_db.put(db, namespace, key, route, entry))
        future.add_done_callback(lambda done: self._written((namespace, key), entry, done))
        self.schedule()
        return future

    # -- semantic mode: vectors ------------------------------------------------------------

    def _vectors(self) -> VectorIndex:
        if self._index is None:
            from .vector_index import VectorIndex

            def load(namespace: str, group: str) -> list[tuple[str, bytes]]:
                with self._reader_lock:
                    if self._reader is None:
                        self._reader = cache_db.reader(self.path)
                    return cache_db.group_vectors(self._reader, namespace, group)

            self._index = VectorIndex(load)
        return self._index

    async def nearest(self, namespace: str, group: str, vector: Any) -> tuple[str, float] | None:
        """The stored request of ``group`` whose vector is closest to ``vector`` (a unit
        numpy vector), with the cosine similarity; None when the group is empty."""
        return self._vectors().nearest(namespace, group, vector)

    def put_vector(self, namespace: str, key: str, group: str, vector: Any, ttl: float) -> None:
        self._vectors().add(namespace, group, key, vector)
        blob = vector.tobytes()
        future = self.writer.submit(lambda db: cache_db.put_vector(db, namespace, key, group, blob))
        future.add_done_callback(_log_failure)

    def count(self, namespace: str, hit: bool, saved_tokens: int = 0,
              saved_usd: float = 0.0) -> None:
        for row in (self._counts[namespace], self.totals[namespace]):
            row[0 if hit else 1] += 1
            row[2] += saved_tokens
            row[3] += saved_usd
        self.schedule()

    # -- background ----------------------------------------------------------------------

    async def flush(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        used, self._used = self._used, {}
        counts, self._counts = self._counts, defaultdict(_zero)
        bounds = (self.max_entries, self.max_bytes)

        def job(db: sqlite3.Connection) -> tuple[int, int]:
            if used:
                cache_db.touch(db, [(t, ns, k) for (ns, k), t in used.items()])
            if counts:
                cache_db.add_counts(db, counts)
            return cache_db.sweep(db, now, *bounds)

        try:
            self.swept = await self.writer.run(job)
        except (sqlite3.Error, OSError) as exc:
            for ns, values in counts.items():  # counts are kept for the next flush
                mine = self._counts[ns]
                for i, value in enumerate(values):
                    mine[i] += value
            log.error("cache_flush_failed", path=self.path, error=str(exc))

    def stats(self, namespace: str | None, now: float) -> list[dict[str, Any]]:
        return self.writer.call(lambda db: cache_db.stats(db, namespace, now))

    def clear(self, namespace: str | None) -> int:
        self._pending.clear()
        if self._index is not None:
            self._index.forget(namespace)
        return self.writer.call(lambda db: cache_db.clear(db, namespace))

    async def aclose(self) -> None:
        await super().aclose()
        await self.writer.aclose()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None


    def _written(self, at: tuple[str, str], entry: Entry, done: Future[None]) -> None:
        """In the writer thread: the entry is in the file now (or failed to get there)."""
        if self._pending.get(at) is entry:
            self._pending.pop(at, None)
        _log_failure(done)


def _log_failure(done: Future[Any]) -> None:
    exc = done.exception()
    if exc is not None:
        log.error("cache_store_failed", error=f"{type(exc).__name__}: {exc}")
