"""``state.db``: limit and budget counters of the embedded backend (``server.state: sqlite``,
see state/persistent.py), one row per worker, key and time bucket."""

from __future__ import annotations

import os
import sqlite3
from typing import Iterable

from sqlite_utils import Database, Migrations

from .sqlite import connect_migrated

FILE = "state.db"
KEEP_SECONDS = 40 * 86400  # bucket rows untouched this long are deleted

migrations = Migrations("gateway.counters")


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE)


@migrations()
def m001_worker_counters(db: Database) -> None:
    """The table as older versions made it (without a migrations record): kept as it is."""
    db.execute("CREATE TABLE IF NOT EXISTS worker_counters (worker INTEGER NOT NULL,"
               " key TEXT NOT NULL, bucket INTEGER NOT NULL, amount REAL NOT NULL,"
               " updated REAL NOT NULL, PRIMARY KEY (worker, key, bucket))")


def connect(file: str) -> sqlite3.Connection:
    """An autocommit connection to a migrated ``state.db`` (created if missing)."""
    return connect_migrated(file, migrations)


def load(file: str, worker: int) -> list[tuple[str, int, float]]:
    """(key, bucket, amount) of ``worker``'s rows; bucket < 0: a total. [] without a file."""
    if not os.path.exists(file):
        return []
    conn = connect(file)
    try:
        return conn.execute("SELECT key, bucket, amount FROM worker_counters WHERE worker = ?",
                            (worker,)).fetchall()
    finally:
        conn.close()


def save(conn: sqlite3.Connection, rows: Iterable[tuple[int, str, int, float, float]],
         now: float) -> None:
    """Upsert (worker, key, bucket, amount, updated) rows; forget buckets long unused."""
    conn.executemany("INSERT INTO worker_counters (worker, key, bucket, amount, updated)"
                     " VALUES (?,?,?,?,?) ON CONFLICT(worker, key, bucket) DO UPDATE"
                     " SET amount = excluded.amount, updated = excluded.updated", rows)
    conn.execute("DELETE FROM worker_counters WHERE bucket >= 0 AND updated < ?",
                 (now - KEEP_SECONDS,))
