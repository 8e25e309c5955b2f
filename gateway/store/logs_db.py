"""``logs.db``: the request log, one row per request (docs/observability.md "Request log").

Written by the request log's background writer (store/logs_writer.py) in batches, one
transaction each; read by GET /admin/logs, GET /admin/stats (store/logs_stats.py) and
`gateway logs`. With ``--workers N`` every worker appends to the same file (WAL, a busy
timeout): ``id`` orders rows by when they were written, ``time`` is when the request arrived.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from itertools import chain, groupby
from typing import Any, Iterable, Sequence

import orjson
from sqlite_utils import Database, Migrations

from .sqlite import connect_migrated

TABLE = "requests"
# The row of the stats contract (GET /admin/logs), in storage order; attempts as JSON.
COLUMNS = ("request_id", "trace_id", "time", "key", "route", "endpoint", "target", "status",
           "error", "outcome", "stream", "cache", "tokens_in", "tokens_out", "cost_usd",
           "latency_ms", "ttfb_ms", "config_version", "attempts")
BODIES = ("request_body", "response_body")
# A line of a batch a provider ran (RequestRecord.native_batch, .native_line): not a request
# the gateway sent, so no latency of its own (left out of /admin/stats' percentiles); the
# pair is unique, so a line handed over again (accounting redone after a crash) is one row.
NATIVE = ("native_batch", "native_line")
LISTED = ("id",) + COLUMNS  # what a listing shows: bodies only for one request
SWEEP_BATCH = 5000  # rows deleted per transaction, so writers wait little

migrations = Migrations("gateway.logs")

_STORED = COLUMNS + BODIES + NATIVE
# Rows go ROWS_PER_INSERT to a statement (the rest one by one): a statement runs once per 40
# rows instead of once per row, so SQLite's work per statement (reset, halt, AUTOINCREMENT's
# sqlite_sequence) is shared (executemany 42k -> 32k instructions per row under callgrind), and
# the GIL, which the sqlite3 module lets go of around every step, changes hands with the event
# loop 15 times per batch of 600 rows instead of 600. 40 rows are 920 parameters, under the 999
# of old SQLite builds.
ROWS_PER_INSERT = 40


def _insert_sql(names: tuple[str, ...], rows: int) -> str:
    values = f"({', '.join('?' for _ in names)})"
    return (f"INSERT INTO {TABLE} ({', '.join(names)}) VALUES {', '.join([values] * rows)} "
            "ON CONFLICT DO NOTHING")


# By a row's length: all stored columns, or COLUMNS alone with BODIES and NATIVE left NULL (as
# in nearly every row; each None bound costs the sqlite3 module ~1.2k instructions) -> the
# statements for one row and for ROWS_PER_INSERT rows.
_INSERTS = {len(names): (_insert_sql(names, 1), _insert_sql(names, ROWS_PER_INSERT))
            for names in (_STORED, COLUMNS)}


@migrations()
def m001_requests(db: Database) -> None:
    db.execute(f"""
    CREATE TABLE {TABLE} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL, trace_id TEXT NOT NULL, time REAL NOT NULL,
        key TEXT, route TEXT NOT NULL, endpoint TEXT NOT NULL, target TEXT,
        status INTEGER NOT NULL, error TEXT, outcome TEXT, stream INTEGER NOT NULL,
        cache TEXT, tokens_in INTEGER, tokens_out INTEGER, cost_usd REAL,
        latency_ms REAL NOT NULL, ttfb_ms REAL, config_version INTEGER NOT NULL,
        attempts TEXT NOT NULL, request_body TEXT, response_body TEXT
    )""")
    db.execute(f"CREATE INDEX {TABLE}_time ON {TABLE} (time)")
    db.execute(f"CREATE INDEX {TABLE}_request_id ON {TABLE} (request_id)")


@migrations()
def m002_native_batch_lines(db: Database) -> None:
    """The lines of provider-native batches marked (NATIVE), each at most once."""
    db.execute(f"ALTER TABLE {TABLE} ADD COLUMN native_batch TEXT")
    db.execute(f"ALTER TABLE {TABLE} ADD COLUMN native_line INTEGER")
    db.execute(f"CREATE UNIQUE INDEX {TABLE}_native_line ON {TABLE} (native_batch, native_line) "
               "WHERE native_batch IS NOT NULL")


def connect(file: str) -> sqlite3.Connection:
    """An autocommit connection to a migrated ``logs.db`` (created 0600 if missing)."""
    return connect_migrated(file, migrations)


def insert(conn: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
    """Append rows, in the order given: tuples of COLUMNS, BODIES then NATIVE, or of COLUMNS
    alone (the others NULL). A native batch's line already there is left as it was."""
    for size, run in groupby(rows, len):
        _insert_run(conn, _INSERTS[size], list(run))


def _insert_run(conn: sqlite3.Connection, sql: tuple[str, str], rows: list[Sequence[Any]]) -> None:
    one, many = sql
    whole = len(rows) - len(rows) % ROWS_PER_INSERT
    if whole:
        conn.executemany(many, (tuple(chain.from_iterable(rows[at:at + ROWS_PER_INSERT]))
                                for at in range(0, whole, ROWS_PER_INSERT)))
    if whole < len(rows):
        conn.executemany(one, rows[whole:])


def sweep(conn: sqlite3.Connection, before: float, batch: int = SWEEP_BATCH) -> int:
    """Delete up to ``batch`` rows older than ``before`` (unix time); how many were."""
    return conn.execute(
        f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} WHERE time < ? LIMIT ?)",
        (before, batch)).rowcount


@dataclass(frozen=True)
class Filter:
    """Which rows a listing shows (GET /admin/logs, `gateway logs`): newest first."""

    limit: int = 50
    status: str | None = None  # 5xx, 4xx, error (>= 400), ok (< 400) or a code such as 429
    route: str | None = None
    since: float | None = None  # unix time: rows of requests that arrived at or after it
    before_id: int | None = None
    after_id: int | None = None  # rows written after this one (`gateway logs --follow`)


STATUS_CLASSES = {"5xx": "status >= 500 AND status < 600", "4xx": "status >= 400 AND status < 500",
                  "error": "status >= 400", "ok": "status < 400"}


def status_clause(status: str) -> tuple[str, tuple[Any, ...]]:
    """SQL for a status filter; ValueError naming what is allowed."""
    if status in STATUS_CLASSES:
        return STATUS_CLASSES[status], ()
    if status.isdigit() and len(status) == 3:
        return "status = ?", (int(status),)
    raise ValueError(f"status must be 5xx, 4xx, error, ok or a status code such as 429, "
                     f"not {status!r}")


def rows(conn: sqlite3.Connection, where: Filter) -> list[dict[str, Any]]:
    """The rows ``where`` selects, newest first (bodies left out)."""
    clauses: list[str] = []
    args: list[Any] = []
    if where.status:
        sql, values = status_clause(where.status)
        clauses.append(sql)
        args.extend(values)
    for sql, value in (("route = ?", where.route), ("time >= ?", where.since),
                       ("id < ?", where.before_id), ("id > ?", where.after_id)):
        if value is not None:
            clauses.append(sql)
            args.append(value)
    query = (f"SELECT {', '.join(LISTED)} FROM {TABLE}"
             + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
             + " ORDER BY id DESC LIMIT ?")
    return [_row(LISTED, found) for found in conn.execute(query, (*args, where.limit))]


def by_request_id(conn: sqlite3.Connection, request_id: str) -> dict[str, Any] | None:
    """One request's row, bodies included (None when they were not logged)."""
    names = LISTED + BODIES
    found = conn.execute(f"SELECT {', '.join(names)} FROM {TABLE} WHERE request_id = ? "
                         "ORDER BY id DESC LIMIT 1", (request_id,)).fetchone()
    return _row(names, found) if found is not None else None


def _row(names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    row = dict(zip(names, values))
    row["stream"] = bool(row["stream"])
    row["attempts"] = orjson.loads(row["attempts"])
    return row
