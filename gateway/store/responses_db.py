"""``responses.db``: the conversations of the Responses front door (POST /v1/responses), so
that a request with ``previous_response_id`` sends the whole history to its target.

One row per stored response: its id, the key that made it (``owner``: the key's SHA-256, ''
when the gateway needs no key), the response it continued, the request's own input items and
the response object (its output items inside), both JSON. A conversation is the chain of rows
joined by ``previous_id``, read with one recursive query. Rows expire after the retention
(``responses.retention``); storing a continuation extends its ancestors to the same time, so
a conversation in use never loses its beginning.
"""

from __future__ import annotations

import os
import sqlite3
from typing import NamedTuple

from sqlite_utils import Database, Migrations

from .sqlite import connect as _connect, connect_migrated

FILE = "responses.db"
MAX_CHAIN = 100_000  # ancestors followed at most (ids are never reused: a guard, not a limit)

migrations = Migrations("gateway.responses")


class Stored(NamedTuple):
    id: str
    owner: str
    previous_id: str | None
    input: bytes  # JSON list: the request's own input items (history excluded)
    response: bytes  # JSON: the response object
    created: float
    expires: float


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE)


@migrations()
def m001_responses(db: Database) -> None:
    db.execute("""
    CREATE TABLE IF NOT EXISTS responses (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, previous_id TEXT,
        input BLOB NOT NULL, response BLOB NOT NULL,
        created REAL NOT NULL, expires REAL NOT NULL
    )""")
    db.execute("CREATE INDEX IF NOT EXISTS responses_expires ON responses (expires)")


def connect(file: str) -> sqlite3.Connection:
    """An autocommit connection to a migrated ``responses.db`` (created if missing)."""
    return connect_migrated(file, migrations)


def reader(file: str) -> sqlite3.Connection:
    """A connection for lookups from any thread (the caller serialises its use)."""
    connect(file).close()  # created and migrated first
    return _connect(file, isolation_level=None, check_same_thread=False)


_COLUMNS = "id, owner, previous_id, input, response, created, expires"


def get(conn: sqlite3.Connection, owner: str, id: str, now: float) -> Stored | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM responses WHERE id = ? AND owner = ?"
                       " AND expires > ?", (id, owner, now)).fetchone()
    return Stored(*row) if row else None


def chain(conn: sqlite3.Connection, owner: str, id: str, now: float) -> list[Stored]:
    """The response ``id`` of ``owner`` and the ones it continued, oldest first; empty when
    ``id`` is unknown, expired or another owner's. A deleted or expired ancestor ends the
    chain there."""
    rows = conn.execute(f"""
    WITH RECURSIVE chain(depth, {_COLUMNS}) AS (
        SELECT 0, {_COLUMNS} FROM responses WHERE id = ? AND owner = ? AND expires > ?
        UNION ALL
        SELECT chain.depth + 1, r.id, r.owner, r.previous_id, r.input, r.response, r.created,
               r.expires
        FROM responses r JOIN chain ON r.id = chain.previous_id
        WHERE r.owner = ? AND r.expires > ? AND chain.depth < ?
    ) SELECT {_COLUMNS} FROM chain ORDER BY depth DESC""",
        (id, owner, now, owner, now, MAX_CHAIN)).fetchall()
    return [Stored(*row) for row in rows]


def put(conn: sqlite3.Connection, row: Stored) -> None:
    """Store ``row`` and extend the rows it continues to its expiry."""
    conn.execute(f"INSERT OR REPLACE INTO responses ({_COLUMNS}) VALUES (?,?,?,?,?,?,?)", row)
    if row.previous_id is not None:
        conn.execute("""
        WITH RECURSIVE up(id, depth) AS (
            SELECT ?, 0
            UNION ALL
            SELECT r.previous_id, up.depth + 1 FROM responses r JOIN up ON r.id = up.id
            WHERE r.previous_id IS NOT NULL AND r.owner = ? AND up.depth < ?
        ) UPDATE responses SET expires = max(expires, ?)
          WHERE owner = ? AND id IN (SELECT id FROM up)""",
            (row.previous_id, row.owner, MAX_CHAIN, row.expires, row.owner))


def delete(conn: sqlite3.Connection, owner: str, id: str) -> bool:
    return conn.execute("DELETE FROM responses WHERE id = ? AND owner = ?",
                        (id, owner)).rowcount > 0


def sweep(conn: sqlite3.Connection, now: float) -> int:
    """Delete the expired rows; returns how many."""
    return conn.execute("DELETE FROM responses WHERE expires <= ?", (now,)).rowcount
