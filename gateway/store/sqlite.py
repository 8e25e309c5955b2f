"""Opening a database in the data directory: one ``connect()`` (private file, WAL, a busy
timeout) and one ``migrate()`` (sqlite-utils Migrations, applied under a write lock so that
several workers starting together apply each migration once)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Callable

from sqlite_utils import Database, Migrations

from .. import datadir

BUSY_TIMEOUT = 5.0  # seconds a writer waits for another process's write lock

# sqlite3 binds int, float, str and bytearray as they are and sends any other value, None
# included, through its adapter registry; for None that ends in two failed attribute lookups
# (__adapt__, __conform__) whose AttributeError messages are formatted and thrown away: ~2k
# instructions per NULL, 10.6k of the request log's 59k per row (5 NULLs in a usual row).
# Registered, None is found at the first step and the C function hands it back as it is:
# still bound as NULL.
_NONE_TO_NONE: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NONE_TO_NONE.get)  # .get(None) is None, in C


def connect(path: str, *, timeout: float = BUSY_TIMEOUT, **options: Any) -> sqlite3.Connection:
    """A connection to ``path`` (created 0600 in a 0700 folder if missing) in WAL mode, so
    readers never wait for the writer. Options are ``sqlite3.connect``'s."""
    db = datadir.connect(path, timeout=timeout, **options)
    try:
        db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        _switch_to_wal(db, timeout)
    except BaseException:
        db.close()
        raise
    return db


def _switch_to_wal(db: sqlite3.Connection, timeout: float) -> None:
    """Put a new file in WAL mode. Changing the journal mode can fail with "database is
    locked" *without* SQLite calling its busy handler (several processes creating the file
    at once), so the wait for the other connection is ours: retried until ``timeout``."""
    deadline = time.monotonic() + timeout
    while db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def migrate(db: Database, migrations: Migrations) -> bool:
    """Apply the pending ``migrations`` to ``db``; True if any were. The check is read-only;
    applying takes the write lock first (BEGIN IMMEDIATE) and checks again under it, so of
    several processes opening a file at once exactly one applies each migration, atomically
    with its record (sqlite-utils nests each migration in a savepoint)."""
    if not migrations.pending(db):
        return False
    conn = db.conn
    with db.ensure_autocommit_on():
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrations.apply(db)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return True


def connect_migrated(path: str, migrations: Migrations,
                     after: Callable[[], None] | None = None) -> sqlite3.Connection:
    """An autocommit connection (``isolation_level=None``) to ``path``, migrated; ``after``
    runs when this call applied migrations (once they are committed)."""
    conn = connect(path, isolation_level=None)
    try:
        if migrate(Database(conn), migrations) and after is not None:
            after()
    except BaseException:
        conn.close()
        raise
    return conn

