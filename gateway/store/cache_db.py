"""``cache.db``: the response cache of the embedded backend (``server.state: sqlite``): one row
per stored answer, keyed by namespace and request hash, and the hit/miss counts per namespace.

An entry holds the answer's JSON and what it cost (tokens, USD, which target answered), never
the request's headers or key: nothing in this file is a secret.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Iterable, NamedTuple

from sqlite_utils import Database, Migrations

from .sqlite import connect as _connect, connect_migrated

FILE = "cache.db"

migrations = Migrations("gateway.cache")


class Entry(NamedTuple):
    """A stored answer, as read back."""

    body: bytes
    target: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    created: float
    expires: float


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE)


@migrations()
def m001_entries(db: Database) -> None:
    db.execute("""
    CREATE TABLE IF NOT EXISTS entries (
        namespace TEXT NOT NULL, key TEXT NOT NULL, route TEXT NOT NULL, target TEXT NOT NULL,
        body BLOB NOT NULL, size INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL, created REAL NOT NULL, expires REAL NOT NULL, used REAL NOT NULL,
        PRIMARY KEY (namespace, key)
    )""")
    db.execute("CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires)")
    db.execute("CREATE INDEX IF NOT EXISTS entries_used ON entries (used)")
    db.execute("""
    CREATE TABLE IF NOT EXISTS counts (
        namespace TEXT PRIMARY KEY, hits INTEGER NOT NULL, misses INTEGER NOT NULL,
        saved_tokens INTEGER NOT NULL, saved_usd REAL NOT NULL
    )""")


@migrations()
def m002_vectors(db: Database) -> None:
    """Semantic mode: the embedding of each stored request's last user message (float32,
    unit length), by namespace and group (the hash of the rest of the request)."""
    db.execute("""
    CREATE TABLE IF NOT EXISTS vectors (
        namespace TEXT NOT NULL, key TEXT NOT NULL, grp TEXT NOT NULL, vector BLOB NOT NULL,
        PRIMARY KEY (namespace, key)
    )""")
    db.execute("CREATE INDEX IF NOT EXISTS vectors_group ON vectors (namespace, grp)")


def connect(file: str) -> sqlite3.Connection:
    """An autocommit connection to a migrated ``cache.db`` (created if missing)."""
    conn = connect_migrated(file, migrations)
    conn.execute("PRAGMA synchronous=NORMAL")  # a cache may lose its last writes on power loss
    return conn


def reader(file: str) -> sqlite3.Connection:
    """A connection for lookups from any thread (the caller serialises its use)."""
    connect(file).close()  # created and migrated first
    return _connect(file, isolation_level=None, check_same_thread=False)


def get(conn: sqlite3.Connection, namespace: str, key: str, now: float) -> Entry | None:
    row = conn.execute(
        "SELECT body, target, prompt_tokens, completion_tokens, cost_usd, created, expires"
        " FROM entries WHERE namespace = ? AND key = ? AND expires > ?",
        (namespace, key, now)).fetchone()
    return Entry(*row) if row else None


def put(conn: sqlite3.Connection, namespace: str, key: str, route: str, entry: Entry) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO entries (namespace, key, route, target, body, size,"
        " prompt_tokens, completion_tokens, cost_usd, created, expires, used)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (namespace, key, route, entry.target, entry.body, len(entry.body), entry.prompt_tokens,
         entry.completion_tokens, entry.cost_usd, entry.created, entry.expires, entry.created))


def put_vector(conn: sqlite3.Connection, namespace: str, key: str, group: str,
               vector: bytes) -> None:
    conn.execute("INSERT OR REPLACE INTO vectors (namespace, key, grp, vector) VALUES (?,?,?,?)",
                 (namespace, key, group, vector))


def group_vectors(conn: sqlite3.Connection, namespace: str, group: str) -> list[tuple[str, bytes]]:
    """(key, vector) of a group, oldest first."""
    return conn.execute("SELECT key, vector FROM vectors WHERE namespace = ? AND grp = ?"
                        " ORDER BY rowid", (namespace, group)).fetchall()


def touch(conn: sqlite3.Connection, used: Iterable[tuple[float, str, str]]) -> None:
    """Record when entries were last used: (time, namespace, key) rows, for LRU eviction."""
    conn.executemany("UPDATE entries SET used = max(used, ?) WHERE namespace = ? AND key = ?",
                     used)


def add_counts(conn: sqlite3.Connection, rows: dict[str, list]) -> None:
    """Add namespace -> [hits, misses, saved_tokens, saved_usd] to the totals."""
    conn.executemany(
        "INSERT INTO counts (namespace, hits, misses, saved_tokens, saved_usd) VALUES (?,?,?,?,?)"
        " ON CONFLICT(namespace) DO UPDATE SET hits = hits + excluded.hits,"
        " misses = misses + excluded.misses, saved_tokens = saved_tokens + excluded.saved_tokens,"
        " saved_usd = saved_usd + excluded.saved_usd",
        [(ns, *values) for ns, values in rows.items()])


def sweep(conn: sqlite3.Connection, now: float, max_entries: int | None,
          max_bytes: int | None) -> tuple[int, int]:
    """Delete expired entries, then the least recently used ones until both bounds hold.
    Returns (expired, evicted)."""
    expired = conn.execute("DELETE FROM entries WHERE expires <= ?", (now,)).rowcount
    evicted = 0
    if max_entries is not None:
        count = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
        if count > max_entries:
            evicted += conn.execute(
                "DELETE FROM entries WHERE rowid IN (SELECT rowid FROM entries"
                " ORDER BY used LIMIT ?)", (count - max_entries,)).rowcount
    if max_bytes is not None:
        total = conn.execute("SELECT coalesce(sum(size), 0) FROM entries").fetchone()[0]
        if total > max_bytes:
            over, doomed = total - max_bytes, []
            for rowid, size in conn.execute("SELECT rowid, size FROM entries ORDER BY used"):
                doomed.append((rowid,))
                over -= size
                if over <= 0:
                    break
            conn.executemany("DELETE FROM entries WHERE rowid = ?", doomed)
            evicted += len(doomed)
    if expired or evicted:
        _drop_orphan_vectors(conn)
    return expired, evicted


def _drop_orphan_vectors(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM vectors WHERE NOT EXISTS (SELECT 1 FROM entries e"
                 " WHERE e.namespace = vectors.namespace AND e.key = vectors.key)")


def stats(conn: sqlite3.Connection, namespace: str | None, now: float) -> list[dict]:
    """Per namespace: live entries, their bytes, and the hit/miss counts recorded so far."""
    where, params = ("AND namespace = ?", (namespace,)) if namespace is not None else ("", ())
    sizes = {ns: (n, b) for ns, n, b in conn.execute(
        f"SELECT namespace, count(*), sum(size) FROM entries WHERE expires > ? {where}"
        " GROUP BY namespace", (now, *params))}
    counts = {row[0]: row[1:] for row in conn.execute(
        "SELECT namespace, hits, misses, saved_tokens, saved_usd FROM counts"
        + (" WHERE namespace = ?" if namespace is not None else ""), params)}
    out = []
    for ns in sorted(set(sizes) | set(counts)):
        entries, size = sizes.get(ns, (0, 0))
        hits, misses, saved_tokens, saved_usd = counts.get(ns, (0, 0, 0, 0.0))
        out.append({"namespace": ns, "entries": entries, "bytes": size or 0, "hits": hits,
                    "misses": misses, "saved_tokens": saved_tokens,
                    "saved_usd": round(saved_usd, 6)})
    return out


def clear(conn: sqlite3.Connection, namespace: str | None) -> int:
    """Delete every entry (of ``namespace``); returns how many."""
    if namespace is None:
        conn.execute("DELETE FROM vectors")
        return conn.execute("DELETE FROM entries").rowcount
    conn.execute("DELETE FROM vectors WHERE namespace = ?", (namespace,))
    return conn.execute("DELETE FROM entries WHERE namespace = ?", (namespace,)).rowcount
