"""KeyStore: virtual keys created at run time, stored as SHA-256 hashes in SQLite.

The raw key is returned once, at creation, and never stored. Revocation writes the database;
every process notices on its next lookup (SQLite's data_version changes when another
connection commits), so revoking a key takes effect on the next request, on every worker.
A revoked key keeps its row: once a key was issued, the gateway keeps requiring keys, even
after the last one is revoked (see ``ever_issued``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .. import datadir
from ..units import iso_utc

KEY_PREFIX = "gw-"


def keystore_path(data_dir: str) -> str:
    return os.path.join(data_dir, "gateway.db")


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class StoredKey:
    name: str
    sha256: str
    routes: tuple[str, ...] | None  # None: every route
    limits: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    expires_at: float | None = None
    created_at: float = 0.0
    revoked_at: float | None = None

    def public(self) -> dict:
        """What may be shown: never the hash (it identifies the key) nor the key."""
        return {
            "name": self.name,
            "routes": list(self.routes) if self.routes is not None else ["*"],
            "limits": self.limits,
            "budget": self.budget,
            "metadata": self.metadata,
            "expires_at": _iso(self.expires_at),
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at),
        }


class KeyError_(Exception):
    """A key operation that cannot be done; the message says why."""


class KeyStore:
    SCHEMA = """
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
    )
    """

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._cache: dict[str, StoredKey] = {}
        self._issued = False  # any row, revoked or not
        self._version: int | None = None
        self._signature_seen: tuple | None = None
        self._checked_at = 0.0

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection; the database is created on first use, not before (so
        `gateway validate` leaves no file behind)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = datadir.connect(self.path, timeout=5, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute(self.SCHEMA)
            self._local.db = db
        return db

    # -- writes (CLI, admin API) -----------------------------------------------------------

    def create(self, name: str, *, routes: list[str] | None = None, limits: dict | None = None,
               budget: dict | None = None, metadata: dict | None = None,
               expires_at: float | None = None) -> tuple[str, StoredKey]:
        """A new key: returns (raw key — shown once, never stored — and its record)."""
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        key = StoredKey(name, hash_key(raw), None if not routes or "*" in routes else tuple(routes),
                        limits or {}, budget, metadata or {}, expires_at, time.time())
        db = self._connect()
        try:
            db.execute(
                "INSERT INTO keys (name, sha256, routes, limits, budget, metadata, expires_at,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key.name, key.sha256, None if key.routes is None else json.dumps(key.routes),
                 json.dumps(key.limits), None if budget is None else json.dumps(budget),
                 json.dumps(key.metadata), expires_at, key.created_at),
            )
        except sqlite3.IntegrityError:
            raise KeyError_(f"a key named '{name}' already exists (revoke it or pick another name)")
        self._version = None  # this connection's own writes do not change data_version
        return raw, key

    def revoke(self, name: str) -> StoredKey:
        db = self._connect()
        cur = db.execute("UPDATE keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                         (time.time(), name))
        if cur.rowcount == 0:
            existing = self.get(name)
            if existing is None:
                raise KeyError_(f"no key named '{name}'")
            raise KeyError_(f"key '{name}' was already revoked")
        self._version = None
        return self.get(name)

    # -- reads ------------------------------------------------------------------------------

    def get(self, name: str) -> StoredKey | None:
        row = self._connect().execute("SELECT * FROM keys WHERE name = ?", (name,)).fetchone()
        return _row(row) if row else None

    def list(self) -> list[StoredKey]:
        rows = self._connect().execute("SELECT * FROM keys ORDER BY created_at").fetchall()
        return [_row(r) for r in rows]

    def lookup(self, sha256: str) -> StoredKey | None:
        """The active (not revoked) key with this hash. Cheap: an in-memory map refreshed only
        when the database changed since the last call."""
        self._refresh()
        return self._cache.get(sha256)

    def ever_issued(self) -> bool:
        """True once any key was created here, revoked and expired ones included. Revoking
        the last key must not open the gateway: keys stay required."""
        self._refresh()
        return self._issued

    def _refresh(self) -> None:
        """Reload the active keys if the database changed. A stat of the files answers the
        common case without a query; SQLite's data_version confirms (and is asked at least
        once a second in any case)."""
        now = time.monotonic()
        if not self._issued and self._version is not None and now - self._checked_at < 0.25:
            return  # no key a moment ago: the first key created is enforced within 250 ms
        signature = self._signature()
        if signature == self._signature_seen and self._version is not None \
                and now - self._checked_at < 1.0:
            return
        self._checked_at = now
        self._signature_seen = signature
        if signature is None:  # no database: no key was ever created here
            self._cache, self._issued, self._version = {}, False, 0
            return
        db = self._connect()
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return
        rows = db.execute("SELECT * FROM keys WHERE revoked_at IS NULL").fetchall()
        self._cache = {k.sha256: k for k in map(_row, rows)}
        self._issued = bool(rows) or db.execute("SELECT 1 FROM keys LIMIT 1").fetchone() is not None
        self._version = version

    def _signature(self) -> tuple | None:
        try:
            main = os.stat(self.path)
        except FileNotFoundError:
            return None
        try:
            wal = os.stat(self.path + "-wal")
            wal_sig = (wal.st_mtime_ns, wal.st_size)
        except FileNotFoundError:
            wal_sig = None
        return (main.st_mtime_ns, main.st_size, wal_sig)


def _row(row: tuple) -> StoredKey:
    name, sha, routes, limits, budget, metadata, expires, created, revoked = row
    return StoredKey(name, sha, None if routes is None else tuple(json.loads(routes)),
                     json.loads(limits), None if budget is None else json.loads(budget),
                     json.loads(metadata), expires, created, revoked)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso_utc(ts)
