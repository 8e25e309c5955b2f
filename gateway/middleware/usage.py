"""Usage accounting: requests, tokens and cost per day, key, route and target.

Requests add to an in-memory aggregate; a supervised background task hands it once a second
to the store's Writer thread, which adds it to ``usage.db`` (WAL), so a slow disk never slows
a request and a crash loses at most the last second. Read by GET /admin/usage and
`gateway usage`. ``estimated_requests`` counts the requests of a row whose provider reported
no usage, so their tokens and cost are estimates.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import defaultdict
from typing import Any

from ..hookspecs import PluginContext
from ..logs import get_logger
from ..request_stats import STATS
from ..state.flusher import PeriodicFlush
from ..store import usage_db as _usage_db
from ..store.usage_db import query as query_usage
from ..store.writer import Writer

log = get_logger("gateway.usage")

__all__ = ["UsageRecorder", "query_usage", "period_range", "usage_db", "usage_recorder",
           "write_usage"]


def _new_row() -> list:
    return [0, 0, 0, 0.0, 0]


def usage_db(data_dir: str) -> str:
    return _usage_db.path(data_dir)


class UsageRecorder(PeriodicFlush):
    def __init__(self, path: str):
        self.path = path
        self.pending: dict[tuple, list] = defaultdict(_new_row)
        self.writer = Writer(lambda: _usage_db.connect(path), name=f"usage-writer:{path}")

    _day: tuple[int, str] = (-1, "")

    def record(self, now: float, key: str | None, route: str, target: str, prompt: int,
               completion: int, cost: float, estimated: bool = False) -> None:
        """One request's usage, added to its row of the next flush."""
        day_number = int(now // 86400)
        if day_number != self._day[0]:  # formatting the date once a day, not per request
            self._day = (day_number, time.strftime("%Y-%m-%d", time.gmtime(now)))
        row_key = (self._day[1], key or "", route, target or "")
        row = self.pending.get(row_key)
        if row is None:
            # The first request of a row since the last flush: make sure the writer runs
            # (a row already pending was scheduled when it came; rows a failed flush put
            # back are retried by the writer that runs it).
            row = self.pending[row_key] = _new_row()
            self.schedule()
        row[0] += 1
        row[1] += prompt
        row[2] += completion
        row[3] += cost
        row[4] += estimated

    async def record_batch(self, batch_id: str, now: float, key: str | None,
                           rows: list[tuple[str, str, dict[str, Any], float, int]]) -> bool:
        """A provider-native batch's usage ((route, target, usage, cost, requests) each),
        written now in one transaction with the batch's id: False (nothing written) when
        it was written before (its accounting redone after a crash)."""
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        added: dict[tuple, list] = defaultdict(_new_row)
        for route, target, usage, cost, requests in rows:
            row = added[(day, key or "", route, target or "")]
            row[0] += requests
            row[1] += int(usage.get("prompt_tokens") or 0)
            row[2] += int(usage.get("completion_tokens") or 0)
            row[3] += cost
        return await asyncio.shield(self.writer.run(
            lambda db: _usage_db.add_once(db, batch_id, now, added)))

    async def flush(self) -> None:
        STATS.flush_budget_spend()  # the limits' budget spend, added up since the last flush
        if not self.pending:
            return
        rows, self.pending = self.pending, defaultdict(_new_row)
        try:
            # shielded: a flush cancelled at shutdown still lands (close waits for it)
            await asyncio.shield(self.writer.run(lambda db: _usage_db.add(db, rows)))
        except (sqlite3.Error, OSError) as exc:  # a full disk, a lost data dir, EMFILE
            for k, v in rows.items():  # keep them for the next flush: nothing is lost
                mine = self.pending[k]
                for i, value in enumerate(v):
                    mine[i] += value
            log.error("usage_flush_failed", path=self.path, error=str(exc))

    async def aclose(self) -> None:
        await super().aclose()
        await self.writer.aclose()


def write_usage(path: str, rows: dict[tuple, list]) -> None:
    """Add ``rows`` ((day, key, route, target) -> [requests, prompt, completion, cost,
    estimated]; the estimated count may be left out: 0) to the table, now (tests, tools)."""
    writer = Writer(lambda: _usage_db.connect(path), name=f"usage-writer:{path}")
    try:
        writer.call(lambda db: _usage_db.add(db, rows))
    finally:
        writer.close()


def period_range(period: str | None, now: float | None = None) -> tuple[str | None, str | None]:
    """'today', 'month', 'YYYY-MM', 'YYYY-MM-DD' or None (everything) -> (since, until)."""
    now = time.time() if now is None else now
    today = time.strftime("%Y-%m-%d", time.gmtime(now))
    if period in (None, "", "all"):
        return None, None
    if period == "today":
        return today, today
    if period == "month":
        return today[:8] + "01", today
    if len(period) == 7:
        return period + "-01", period + "-31"
    return period, period


def usage_recorder(context: PluginContext) -> UsageRecorder:
    path = usage_db(context.data_dir)
    return context.state.acquire(("usage", path), lambda: UsageRecorder(path))
