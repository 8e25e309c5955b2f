"""``keys.db``: virtual keys created at run time (see keys/store.py). Only key changes write
this file, so its ``PRAGMA data_version`` is the key generation: it changes exactly when
another connection (another worker, the CLI, this process's writer) changed a key."""

from __future__ import annotations

import os
import sqlite3

from sqlite_utils import Database, Migrations

from . import legacy
from .sqlite import connect_migrated

FILE = "keys.db"
COLUMNS = ("name", "sha256", "routes", "limits", "budget", "metadata", "expires_at",
           "created_at", "revoked_at")

migrations = Migrations("gateway.keys")


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE)


@migrations()
def m001_keys(db: Database) -> None:
    db.execute("""
    CREATE TABLE IF NOT EXISTS keys (
        name TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        routes TEXT,
        limits TEXT NOT NULL DEFAULT '{}',
        budget TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        expires_at REAL,
        created_at REAL NOT NULL,
        revoked_at REAL
    )""")


@migrations()
def m002_keys_from_gateway_db(db: Database) -> None:
    """Keys created by older versions lived in gateway.db: copy them here."""
    old = legacy.rows(legacy.db_path(db.conn), "keys", COLUMNS)
    db.conn.executemany(f"INSERT OR IGNORE INTO keys ({', '.join(COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(COLUMNS))})", old)


def exists(file: str) -> bool:
    """True when there is something to read, here or still in an older gateway.db."""
    return legacy.exists(file, "keys")


def connect(file: str) -> sqlite3.Connection:
    """An autocommit connection to a migrated ``keys.db`` (created if missing)."""
    return connect_migrated(file, migrations, after=lambda: legacy.drop(file, "keys"))
