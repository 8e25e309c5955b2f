"""The request log's writer: RequestRecords in, rows of ``logs.db`` out, never in the way of a
request.

``put`` (on the event loop, once per request) only appends the record to a bounded list;
when rows waiting plus rows being written reach ``queue_size`` the record is dropped and
counted instead (``dropped``; logged as ``request_log_dropped`` at most once per flush). A
supervised task wakes on the first record, waits ``flush_every`` for more and hands the batch
to the store's Writer thread, which turns records into rows (bodies redacted there) and
inserts them in one transaction: a crash loses at most the rows of the last interval, never
a committed one (WAL). A second supervised task deletes rows older than the retention, at
start and every ``sweep_every`` seconds, in small transactions.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any, Callable

import orjson

from ..logs import get_logger
from ..request_record import RequestRecord
from . import logs_db
from .tasks import Supervisor
from .writer import Writer

log = get_logger("gateway.request_log")

FLUSH_EVERY = 0.2  # seconds a batch gathers after its first record
SWEEP_EVERY = 3600.0  # at most; a short retention is swept more often

Redact = Callable[[str], str]


class RequestLogWriter:
    def __init__(self, file: str, *, queue_size: int = 10_000, retention_s: float = 30 * 86400,
                 redact: Redact = str, flush_every: float = FLUSH_EVERY,
                 clock: Callable[[], float] = time.time):
        self.file = file
        self.queue_size = queue_size
        self.retention_s = retention_s
        self.redact = redact
        self.flush_every = flush_every
        self.clock = clock
        self.pending: list[tuple[RequestRecord, bool]] = []
        self.in_flight = 0
        self.written = 0
        self.dropped = 0
        self.swept = 0
        self.failures = 0  # failed writes in a row
        self._dropped_logged = 0
        self._wake: asyncio.Event | None = None
        self._tasks: tuple[Supervisor, Supervisor] | None = None
        self.writer = Writer(lambda: logs_db.connect(file), name=f"request-log:{file}")

    def configure(self, *, queue_size: int, retention_s: float, redact: Redact) -> None:
        """The settings of a newly compiled config (the writer is kept across reloads)."""
        self.queue_size, self.retention_s, self.redact = queue_size, retention_s, redact

    @property
    def sweep_every(self) -> float:
        return max(1.0, min(SWEEP_EVERY, self.retention_s / 10))

    # -- the request path ------------------------------------------------------------------

    def put(self, record: RequestRecord, bodies: bool) -> None:
        """Queue one request's record (on the event loop); never waits, drops when full."""
        pending = self.pending
        if len(pending) + self.in_flight >= self.queue_size:
            self.dropped += 1
            if self._wake is not None:
                self._wake.set()  # the next flush reports the drop
            return
        if not pending:
            if self._wake is None:
                self._start()
            self._wake.set()  # type: ignore[union-attr]
        pending.append((record, bodies))

    def _start(self) -> None:
        self._wake = asyncio.Event()
        self._tasks = (Supervisor(f"request-log-flush:{self.file}", self._flush_loop),
                       Supervisor(f"request-log-sweep:{self.file}", self._sweep_loop))
        for task in self._tasks:
            task.start()

    # -- background ------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            # after failed writes (a full disk, a lost data dir) wait longer: up to ~25 s
            await asyncio.sleep(self.flush_every * 2 ** min(self.failures, 7))
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write what is queued now (one transaction), and report drops since the last time."""
        if self.dropped != self._dropped_logged:
            log.warning("request_log_dropped", dropped=self.dropped - self._dropped_logged,
                        dropped_total=self.dropped, queue_size=self.queue_size)
            self._dropped_logged = self.dropped
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        self.in_flight = len(batch)
        redact = self.redact
        try:
            # shielded: a flush cancelled at shutdown still lands (close waits for it)
            await asyncio.shield(self.writer.run(lambda conn: _write(conn, batch, redact)))
            self.written += len(batch)
            self.failures = 0
        except (sqlite3.Error, OSError) as exc:  # a full disk, a lost data dir
            self.failures += 1
            room = max(0, self.queue_size - len(self.pending))
            self.pending[:0] = batch[:room]  # kept for the next flush while there is room
            self.dropped += len(batch) - min(room, len(batch))
            log.error("request_log_write_failed", path=self.file, rows=len(batch),
                      error=str(exc), failures=self.failures)
            if self._wake is not None:
                self._wake.set()
        finally:
            self.in_flight = 0

    async def _sweep_loop(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(self.sweep_every)

    async def sweep(self) -> int:
        """Delete the rows older than the retention, a batch per transaction; how many."""
        before = self.clock() - self.retention_s
        total = 0
        while True:
            deleted = await self.writer.run(lambda conn: logs_db.sweep(conn, before))
            total += deleted
            if deleted < logs_db.SWEEP_BATCH:
                break
        if total:
            self.swept += total
            log.info("request_log_swept", path=self.file, deleted=total,
                     retention_s=self.retention_s)
        return total

    async def aclose(self) -> None:
        """Stop the background tasks and write what is still queued."""
        if self._tasks is not None:
            for task in self._tasks:
                await task.stop()
        await self.flush()
        await self.writer.aclose()


def _write(conn: sqlite3.Connection, batch: list[tuple[RequestRecord, bool]],
           redact: Redact) -> None:
    logs_db.insert(conn, [row(record, redact if bodies else None) for record, bodies in batch])


def row(record: RequestRecord, redact: Redact | None) -> tuple[Any, ...]:
    """A record as a row of logs_db.COLUMNS + BODIES + NATIVE, bodies only with ``redact``;
    of COLUMNS alone when the rest would all be None (nearly every row: fewer NULLs to bind)."""
    attempts = orjson.dumps([{"target": a.target, "status": a.status, "latency_ms": a.latency_ms,
                              "error_class": a.error_class} for a in record.attempts]).decode()
    columns = (record.request_id, record.trace_id, record.time, record.key, record.route,
               record.endpoint, record.target, record.status, record.error, record.outcome,
               int(record.stream), record.cache, record.tokens_in, record.tokens_out,
               record.cost_usd, record.latency_ms, record.ttfb_ms, record.config_version,
               attempts)
    request_body = response_body = None
    if redact is not None:
        if record.request_body is not None:
            request_body = redact(orjson.dumps(record.request_body, default=str).decode())
        if record.response_body is not None:
            response_body = redact(record.response_body.decode("utf-8", "replace"))
    if (request_body is None and response_body is None and record.native_batch is None
            and record.native_line is None):
        return columns
    return columns + (request_body, response_body, record.native_batch, record.native_line)
