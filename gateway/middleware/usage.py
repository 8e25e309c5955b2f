"""Usage accounting: requests, tokens and cost per day, key, route and target.

Requests add to an in-memory aggregate; a background task writes it to SQLite once a second
(in a worker thread, WAL), so a slow disk never slows a request and a crash loses at most the
last second. Read by GET /admin/usage and `gateway usage`. ``estimated_requests`` counts the
requests of a row whose provider reported no usage, so their tokens and cost are estimates.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import defaultdict
from typing import Any

from .. import datadir
from ..hookspecs import PluginContext
from ..logs import get_logger
from ..state.flusher import PeriodicFlush

log = get_logger("gateway.usage")

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL, key TEXT NOT NULL, route TEXT NOT NULL, target TEXT NOT NULL,
    requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL, estimated_requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key, route, target)
)
"""
COLUMNS = ("day", "key", "route", "target", "requests", "prompt_tokens", "completion_tokens",
           "cost_usd", "estimated_requests")
SUMMED = COLUMNS[4:]


def _new_row() -> list:
    return [0, 0, 0, 0.0, 0]


def usage_db(data_dir: str) -> str:
    return os.path.join(data_dir, "gateway.db")


class UsageRecorder(PeriodicFlush):
    def __init__(self, path: str):
        self.path = path
        self.pending: dict[tuple, list] = defaultdict(_new_row)

    _day: tuple[int, str] = (-1, "")

    def record(self, now: float, key: str | None, route: str, target: str,
               usage: dict[str, Any], cost: float, estimated: bool = False) -> None:
        day_number = int(now // 86400)
        if day_number != self._day[0]:  # formatting the date once a day, not per request
            self._day = (day_number, time.strftime("%Y-%m-%d", time.gmtime(now)))
        day = self._day[1]
        row = self.pending[(day, key or "", route, target or "")]
        row[0] += 1
        row[1] += int(usage.get("prompt_tokens") or 0)
        row[2] += int(usage.get("completion_tokens") or 0)
        row[3] += cost
        row[4] += estimated
        self.schedule()

    async def flush(self) -> None:
        if not self.pending:
            return
        rows, self.pending = self.pending, defaultdict(_new_row)
        try:
            await asyncio.to_thread(write_usage, self.path, rows)
        except (sqlite3.Error, OSError) as exc:  # a full disk, a lost data dir, EMFILE
            for k, v in rows.items():  # keep them for the next flush: nothing is lost
                mine = self.pending[k]
                for i, value in enumerate(v):
                    mine[i] += value
            log.error("usage_flush_failed", path=self.path, error=str(exc))


def _connect(path: str) -> sqlite3.Connection:
    db = datadir.connect(path, timeout=5)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(SCHEMA)
    _add_estimated_column(db)
    return db


def _add_estimated_column(db: sqlite3.Connection) -> None:
    """A usage table from before estimated rows were marked gets the column (0: reported)."""
    if "estimated_requests" in {row[1] for row in db.execute("PRAGMA table_info(usage)")}:
        return
    try:
        db.execute("ALTER TABLE usage ADD COLUMN estimated_requests INTEGER NOT NULL DEFAULT 0")
    except sqlite3.OperationalError as exc:  # another worker added it first
        if "duplicate column" not in str(exc):
            raise


def write_usage(path: str, rows: dict[tuple, list]) -> None:
    """Add ``rows`` ((day, key, route, target) -> [requests, prompt, completion, cost,
    estimated]; the estimated count may be left out: 0) to the table."""
    db = _connect(path)
    try:
        with db:
            db.executemany(
                f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
                "ON CONFLICT DO UPDATE SET "
                + ", ".join(f"{c} = {c} + excluded.{c}" for c in SUMMED),
                [(*k, *v, *[0] * (len(SUMMED) - len(v))) for k, v in rows.items()],
            )
    finally:
        db.close()


def query_usage(path: str, *, key: str | None = None, since: str | None = None,
                until: str | None = None, group_by: tuple[str, ...] = ("key", "route", "target")
                ) -> list[dict]:
    """Totals grouped by the given columns, for days in [since, until] (YYYY-MM-DD)."""
    allowed = {"day", "key", "route", "target"}
    group = [g for g in group_by if g in allowed]
    if not os.path.exists(path):
        return []
    where, params = [], []
    if key is not None:
        where.append("key = ?")
        params.append(key)
    if since:
        where.append("day >= ?")
        params.append(since)
    if until:
        where.append("day <= ?")
        params.append(until)
    cols = ", ".join(group)
    sums = ", ".join(f"SUM({c})" for c in SUMMED)
    sql = (f"SELECT {cols + ', ' if cols else ''}{sums} FROM usage"
           + (f" WHERE {' AND '.join(where)}" if where else "")
           + (f" GROUP BY {cols} ORDER BY {cols}" if cols else ""))
    db = _connect(path)
    try:
        rows = db.execute(sql, params).fetchall()
    finally:
        db.close()
    out = []
    for row in rows:
        names = dict(zip(group, row[: len(group)]))
        requests, prompt, completion, cost, estimated = row[len(group):]
        if requests is None:
            continue
        out.append({**names, "requests": requests, "prompt_tokens": prompt,
                    "completion_tokens": completion, "cost_usd": round(cost, 6),
                    "estimated_requests": estimated})
    return out


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
