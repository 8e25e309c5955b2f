"""Rows that older versions kept in ``gateway.db`` beside the config versions: virtual keys
and usage. They now live in files of their own (``keys.db``, ``usage.db``), so the usage
writer, busy every second, never touches the file keys are read from. The first open of a new
file copies the old rows in (a migration, in the new file's transaction); once that is
committed, the old table is dropped from ``gateway.db``."""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Sequence

from .. import datadir

LEGACY_FILE = "gateway.db"


def legacy_path(path: str) -> str | None:
    """The ``gateway.db`` beside ``path``; None when ``path`` is that file itself."""
    legacy = os.path.join(os.path.dirname(os.path.abspath(path)), LEGACY_FILE)
    return None if os.path.abspath(path) == legacy else legacy


def db_path(conn: sqlite3.Connection) -> str:
    """The file ``conn``'s main database is in."""
    return next(str(row[2]) for row in conn.execute("PRAGMA database_list") if row[1] == "main")


def exists(path: str, table: str) -> bool:
    """True when there are rows of ``table`` to read: ``path`` exists, or the ``gateway.db``
    beside it still holds some (opening ``path`` then moves them). Creates nothing."""
    return os.path.exists(path) or _has_rows(path, table)


def _has_rows(path: str, table: str) -> bool:
    legacy = legacy_path(path)
    if legacy is None or not os.path.exists(legacy):
        return False
    conn = datadir.connect(legacy, timeout=5)
    try:
        if not _exists(conn, table):
            return False
        return conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None
    finally:
        conn.close()


def rows(path: str, table: str, columns: Sequence[str],
         defaults: dict[str, object] | None = None) -> list[tuple[Any, ...]]:
    """``table``'s rows in the ``gateway.db`` beside ``path`` (``columns`` in that order; a
    column the old table lacks reads as its default), [] when there is none."""
    legacy = legacy_path(path)
    if legacy is None or not os.path.exists(legacy):
        return []
    conn = datadir.connect(legacy, timeout=5)
    try:
        if not _exists(conn, table):
            return []
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        defaults = defaults or {}
        select = ", ".join(c if c in present else "?" for c in columns)
        params = [defaults.get(c) for c in columns if c not in present]
        return conn.execute(f"SELECT {select} FROM {table}", params).fetchall()
    finally:
        conn.close()


def drop(path: str, table: str) -> None:
    """Forget ``table`` in the ``gateway.db`` beside ``path`` (its rows were copied)."""
    legacy = legacy_path(path)
    if legacy is None or not os.path.exists(legacy):
        return
    conn = datadir.connect(legacy, timeout=5, isolation_level=None)
    try:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        conn.close()


def _exists(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (table,)).fetchone() is not None
