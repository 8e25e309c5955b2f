"""KeyStore: virtual keys created at run time, stored as SHA-256 hashes in ``keys.db``.

The raw key is returned once, at creation, and never stored. Revocation writes the database;
every process notices on its next lookup: only key changes write ``keys.db``, so SQLite's
``PRAGMA data_version`` on the reading connection is the key generation, one cheap pragma per
request (no file stat) that changes as soon as another connection — another worker, the CLI,
this process's writer thread — committed a change. Writes go through the store's Writer.
A revoked key keeps its row: once a key was issued, the gateway keeps requiring keys, even
after the last one is revoked (see ``ever_issued``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..store import keys_db
from ..store.writer import Writer
from ..units import iso_utc

KEY_PREFIX = "gw-"


def keystore_path(data_dir: str) -> str:
    return keys_db.path(data_dir)


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
    ABSENT_RECHECK = 0.25  # seconds: while no key store exists, look for one this often

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._writer = Writer(lambda: keys_db.connect(path), name=f"keys-writer:{path}")
        self._cache: dict[str, StoredKey] = {}
        self._issued = False  # any row, revoked or not
        self._generation: int | None = None  # data_version of this thread's connection
        self._absent_checked_at: float | None = None

    def _connect(self) -> sqlite3.Connection:
        """This thread's reading connection; the database is created on first use, not
        before (so `gateway validate` leaves no file behind)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = keys_db.connect(self.path)
        return db

    def close(self) -> None:
        """Finish the queued writes and close this thread's connections (both are opened
        again if the store is used after)."""
        self._writer.close()
        self._close_reader()

    async def aclose(self) -> None:
        await self._writer.aclose()
        self._close_reader()

    def _close_reader(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            self._generation = None
            db.close()

    # -- writes (CLI, admin API) -----------------------------------------------------------

    def create(self, name: str, *, routes: list[str] | None = None, limits: dict | None = None,
               budget: dict | None = None, metadata: dict | None = None,
               expires_at: float | None = None) -> tuple[str, StoredKey]:
        """A new key: returns (raw key — shown once, never stored — and its record)."""
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        key = StoredKey(name, hash_key(raw), None if not routes or "*" in routes else tuple(routes),
                        limits or {}, budget, metadata or {}, expires_at, time.time())
        row = (key.name, key.sha256, None if key.routes is None else json.dumps(key.routes),
               json.dumps(key.limits), None if budget is None else json.dumps(budget),
               json.dumps(key.metadata), expires_at, key.created_at)
        self._absent_checked_at = None  # enforce it on the next request, not 250 ms later
        try:
            self._writer.call(lambda db: db.execute(
                "INSERT INTO keys (name, sha256, routes, limits, budget, metadata, expires_at,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row))
        except sqlite3.IntegrityError:
            raise KeyError_(f"a key named '{name}' already exists (revoke it or pick another name)")
        return raw, key

    def revoke(self, name: str) -> StoredKey:
        revoked = self._writer.call(lambda db: db.execute(
            "UPDATE keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            (time.time(), name)).rowcount)
        if revoked == 0:
            existing = self.get(name)
            if existing is None:
                raise KeyError_(f"no key named '{name}'")
            raise KeyError_(f"key '{name}' was already revoked")
        key = self.get(name)
        if key is None:  # revoked keys keep their row: only a store deleted meanwhile
            raise KeyError_(f"no key named '{name}'")
        return key

    # -- reads ------------------------------------------------------------------------------

    def get(self, name: str) -> StoredKey | None:
        if not keys_db.exists(self.path):
            return None
        row = self._connect().execute("SELECT * FROM keys WHERE name = ?", (name,)).fetchone()
        return _row(row) if row else None

    def list(self) -> list[StoredKey]:
        if not keys_db.exists(self.path):
            return []
        rows = self._connect().execute("SELECT * FROM keys ORDER BY created_at").fetchall()
        return [_row(r) for r in rows]

    def lookup(self, sha256: str) -> StoredKey | None:
        """The active (not revoked) key with this hash. Cheap: an in-memory map, reloaded only
        when the key generation changed since the last call."""
        self._refresh()
        return self._cache.get(sha256)

    def ever_issued(self) -> bool:
        """True once any key was created here, revoked and expired ones included. Revoking
        the last key must not open the gateway: keys stay required."""
        self._refresh()
        return self._issued

    def _refresh(self) -> None:
        """Reload the keys if the generation changed. Until a key store exists, look for one
        at most every ABSENT_RECHECK seconds (the first key created is enforced within that)
        without creating it; from then on, one ``PRAGMA data_version`` per call."""
        db = getattr(self._local, "db", None)
        if db is None:
            now = time.monotonic()
            if (self._absent_checked_at is not None
                    and now - self._absent_checked_at < self.ABSENT_RECHECK):
                return  # found absent a moment ago: still no key store, no key needed
            if not keys_db.exists(self.path):
                self._absent_checked_at = now
                self._cache, self._issued = {}, False
                return
            # It exists: open it, or raise (sqlite3.Error) every time it cannot be read.
            # Never fall back on "absent": a store that fails to open must not open the gateway.
            self._absent_checked_at = None
            db = self._connect()
        generation = db.execute("PRAGMA data_version").fetchone()[0]
        if generation == self._generation:
            return
        rows = db.execute("SELECT * FROM keys WHERE revoked_at IS NULL").fetchall()
        self._cache = {k.sha256: k for k in map(_row, rows)}
        self._issued = bool(rows) or db.execute("SELECT 1 FROM keys LIMIT 1").fetchone() is not None
        self._generation = generation


def _row(row: tuple) -> StoredKey:
    name, sha, routes, limits, budget, metadata, expires, created, revoked = row
    return StoredKey(name, sha, None if routes is None else tuple(json.loads(routes)),
                     json.loads(limits), None if budget is None else json.loads(budget),
                     json.loads(metadata), expires, created, revoked)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso_utc(ts)
