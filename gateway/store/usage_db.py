"""``usage.db``: requests, tokens and cost per day, key, route and target (see
middleware/usage.py for how they are counted). Written once a second by the usage flusher,
so it is a file of its own: key lookups never read a file that changes that often."""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Mapping, Sequence

from sqlite_utils import Database, Migrations

from . import legacy
from .sqlite import connect_migrated

FILE = "usage.db"
COLUMNS = ("day", "key", "route", "target", "requests", "prompt_tokens", "completion_tokens",
           "cost_usd", "estimated_requests")
GROUPS = frozenset(COLUMNS[:4])
SUMMED = COLUMNS[4:]

migrations = Migrations("gateway.usage")

_UPSERT = (f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
           "ON CONFLICT DO UPDATE SET " + ", ".join(f"{c} = {c} + excluded.{c}" for c in SUMMED))


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE)


@migrations()
def m001_usage(db: Database) -> None:
    db.execute("""
    CREATE TABLE IF NOT EXISTS usage (
        day TEXT NOT NULL, key TEXT NOT NULL, route TEXT NOT NULL, target TEXT NOT NULL,
        requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
        estimated_requests INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, key, route, target)
    )""")


@migrations()
def m002_usage_from_gateway_db(db: Database) -> None:
    """Usage counted by older versions lived in gateway.db (maybe without the
    estimated_requests column: 0, reported): add it here."""
    old = legacy.rows(legacy.db_path(db.conn), "usage", COLUMNS, {"estimated_requests": 0})
    db.conn.executemany(_UPSERT, old)


@migrations()
def m003_batch_charges(db: Database) -> None:
    """The provider-native batches whose usage was added (by batch id), each added once."""
    db.execute("CREATE TABLE IF NOT EXISTS batch_charges (batch_id TEXT PRIMARY KEY, "
               "time REAL NOT NULL)")


def exists(file: str) -> bool:
    """True when there is something to read, here or still in an older gateway.db."""
    return legacy.exists(file, "usage")


def connect(file: str) -> sqlite3.Connection:
    """An autocommit connection to a migrated ``usage.db`` (created if missing)."""
    return connect_migrated(file, migrations, after=lambda: legacy.drop(file, "usage"))


def add(conn: sqlite3.Connection, rows: Mapping[tuple[str, ...], Sequence[float]]) -> None:
    """Add ``rows`` ((day, key, route, target) -> [requests, prompt, completion, cost,
    estimated]; the estimated count may be left out: 0) to the totals."""
    conn.executemany(_UPSERT, [(*k, *v, *[0] * (len(SUMMED) - len(v))) for k, v in rows.items()])


def add_once(conn: sqlite3.Connection, batch_id: str, now: float,
             rows: Mapping[tuple[str, ...], Sequence[float]]) -> bool:
    """Add ``rows`` (as ``add``) for a batch, in the same transaction as the batch's mark:
    False (nothing added) when that batch's usage was added before."""
    if not conn.execute("INSERT OR IGNORE INTO batch_charges (batch_id, time) VALUES (?, ?)",
                        (batch_id, now)).rowcount:
        return False
    add(conn, rows)
    return True


def query(file: str, *, key: str | None = None, since: str | None = None,
          until: str | None = None, group_by: Sequence[str] = ("key", "route", "target")
          ) -> list[dict[str, Any]]:
    """Totals grouped by the given columns, for days in [since, until] (YYYY-MM-DD)."""
    group = [g for g in group_by if g in GROUPS]
    if not exists(file):
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
    conn = connect(file)
    try:
        found = conn.execute(sql, params).fetchall()
    finally:
        conn.close()
    out = []
    for row in found:
        names = dict(zip(group, row[: len(group)]))
        requests, prompt, completion, cost, estimated = row[len(group):]
        if requests is None:
            continue
        out.append({**names, "requests": requests, "prompt_tokens": prompt,
                    "completion_tokens": completion, "cost_usd": round(cost, 6),
                    "estimated_requests": estimated})
    return out
