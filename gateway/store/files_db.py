"""``files.db``: what /v1/files and /v1/batches know about their files and batches (the files'
contents are encrypted beside it, in ``files/``; see gateway/files/). Owners are keys, by the
SHA-256 of the key ('' when the gateway needs no key)."""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Iterable

from sqlite_utils import Database, Migrations

from .sqlite import connect_migrated

FILE = "files.db"
BLOBS = "files"  # the folder of the encrypted contents, beside files.db

migrations = Migrations("gateway.files")

FILE_COLUMNS = ("id", "owner", "owner_name", "filename", "purpose", "bytes", "created_at",
                "status", "status_details", "lines")
BATCH_COLUMNS = (
    "id", "owner", "owner_name", "endpoint", "input_file_id", "completion_window", "status",
    "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at",
    "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at",
    "total", "completed", "failed", "metadata", "errors", "runner", "lease_until",
    "provider", "provider_batch_id", "native_routes", "provider_files", "accounted")


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE)


def blob_dir(data_dir: str) -> str:
    return os.path.join(data_dir, BLOBS)


@migrations()
def m001_files(db: Database) -> None:
    db.execute("""
    CREATE TABLE IF NOT EXISTS files (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        owner_name TEXT,
        filename TEXT NOT NULL,
        purpose TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        status_details TEXT,
        lines INTEGER
    )""")
    db.execute("CREATE INDEX IF NOT EXISTS files_owner ON files (owner, created_at)")


@migrations()
def m002_batches(db: Database) -> None:
    db.execute("""
    CREATE TABLE IF NOT EXISTS batches (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        owner_name TEXT,
        endpoint TEXT NOT NULL,
        input_file_id TEXT NOT NULL,
        completion_window TEXT NOT NULL,
        status TEXT NOT NULL,
        output_file_id TEXT,
        error_file_id TEXT,
        created_at INTEGER NOT NULL,
        in_progress_at INTEGER,
        expires_at INTEGER NOT NULL,
        finalizing_at INTEGER,
        completed_at INTEGER,
        failed_at INTEGER,
        expired_at INTEGER,
        cancelling_at INTEGER,
        cancelled_at INTEGER,
        total INTEGER NOT NULL DEFAULT 0,
        completed INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        metadata TEXT,
        errors TEXT,
        runner TEXT,
        lease_until REAL
    )""")
    db.execute("CREATE INDEX IF NOT EXISTS batches_owner ON batches (owner, created_at)")
    # One row per input line once it is answered (ok: 1 output, 0 error); ``result`` is the
    # output or error line, encrypted. A line without a row has not been answered yet.
    db.execute("""
    CREATE TABLE IF NOT EXISTS batch_results (
        batch_id TEXT NOT NULL,
        line INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        result BLOB NOT NULL,
        PRIMARY KEY (batch_id, line)
    )""")


@migrations()
def m003_native_batches(db: Database) -> None:
    """A batch run by a provider's own Batch API (files/native_batches.py): which provider,
    and its id there (both NULL for batches the gateway runs)."""
    db.execute("ALTER TABLE batches ADD COLUMN provider TEXT")
    db.execute("ALTER TABLE batches ADD COLUMN provider_batch_id TEXT")


@migrations()
def m004_native_batch_accounting(db: Database) -> None:
    """A provider-native batch's routes and the target each reaches (JSON {route: target}),
    to count its usage; and its files at the provider still to delete there (JSON list of the
    provider's file ids, NULL when none are left)."""
    db.execute("ALTER TABLE batches ADD COLUMN native_routes TEXT")
    db.execute("ALTER TABLE batches ADD COLUMN provider_files TEXT")


@migrations()
def m005_native_batch_accounted(db: Database) -> None:
    """Whether a provider-native batch's usage is counted: 0 from the write that marks it
    ended (its results in the gateway's files) until its usage is counted (then 1), so a
    restart in between counts it then; NULL for the batches the gateway runs (and native
    ones that ended before this column)."""
    db.execute("ALTER TABLE batches ADD COLUMN accounted INTEGER")


def connect(file: str) -> sqlite3.Connection:
    """An autocommit connection to a migrated ``files.db`` (created if missing)."""
    conn = connect_migrated(file, migrations)
    conn.row_factory = sqlite3.Row
    return conn


def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return None if row is None else dict(row)


# -- files -------------------------------------------------------------------------------

def insert_file(conn: sqlite3.Connection, record: dict[str, Any]) -> None:
    conn.execute(f"INSERT INTO files ({', '.join(FILE_COLUMNS)}) VALUES "
                 f"({', '.join('?' * len(FILE_COLUMNS))})",
                 [record.get(c) for c in FILE_COLUMNS])


def get_file(conn: sqlite3.Connection, file_id: str, owner: str) -> dict[str, Any] | None:
    return _row(conn.execute("SELECT * FROM files WHERE id = ? AND owner = ?",
                             (file_id, owner)).fetchone())


def list_files(conn: sqlite3.Connection, owner: str, purpose: str | None, after: str | None,
               limit: int, descending: bool = True) -> list[dict[str, Any]]:
    """``owner``'s files, newest first (or oldest first), from the one after ``after``."""
    where, args = ["owner = ?"], [owner]
    if purpose is not None:
        where.append("purpose = ?")
        args.append(purpose)
    op, order = ("<", "DESC") if descending else (">", "ASC")
    if after is not None:
        mark = conn.execute("SELECT created_at, rowid FROM files WHERE id = ? AND owner = ?",
                            (after, owner)).fetchone()
        if mark is not None:
            where.append(f"(created_at, rowid) {op} (?, ?)")
            args.extend([mark["created_at"], mark["rowid"]])
    rows = conn.execute(f"SELECT * FROM files WHERE {' AND '.join(where)} "
                        f"ORDER BY created_at {order}, rowid {order} LIMIT ?", (*args, limit))
    return [dict(r) for r in rows]


def owner_bytes(conn: sqlite3.Connection, owner: str) -> int:
    """The bytes of ``owner``'s files (batch outputs included)."""
    return int(conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM files WHERE owner = ?",
                            (owner,)).fetchone()[0])


def file_ids(conn: sqlite3.Connection) -> set[str]:
    """The ids of every recorded file (any owner)."""
    return {r[0] for r in conn.execute("SELECT id FROM files")}


def forget_files(conn: sqlite3.Connection, file_ids: Iterable[str]) -> None:
    """Drop the rows of files whose contents are gone (any owner)."""
    conn.executemany("DELETE FROM files WHERE id = ?", [(i,) for i in file_ids])


def delete_file(conn: sqlite3.Connection, file_id: str, owner: str) -> bool:
    return conn.execute("DELETE FROM files WHERE id = ? AND owner = ?",
                        (file_id, owner)).rowcount > 0


# -- batches -----------------------------------------------------------------------------

def insert_batch(conn: sqlite3.Connection, record: dict[str, Any]) -> None:
    conn.execute(f"INSERT INTO batches ({', '.join(BATCH_COLUMNS)}) VALUES "
                 f"({', '.join('?' * len(BATCH_COLUMNS))})",
                 [record.get(c) for c in BATCH_COLUMNS])


def get_batch(conn: sqlite3.Connection, batch_id: str, owner: str | None = None
              ) -> dict[str, Any] | None:
    if owner is None:
        return _row(conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone())
    return _row(conn.execute("SELECT * FROM batches WHERE id = ? AND owner = ?",
                             (batch_id, owner)).fetchone())


def list_batches(conn: sqlite3.Connection, owner: str, after: str | None, limit: int
                 ) -> list[dict[str, Any]]:
    where, args = ["owner = ?"], [owner]
    if after is not None:
        mark = conn.execute("SELECT created_at, rowid FROM batches WHERE id = ? AND owner = ?",
                            (after, owner)).fetchone()
        if mark is not None:
            where.append("(created_at, rowid) < (?, ?)")
            args.extend([mark["created_at"], mark["rowid"]])
    rows = conn.execute(f"SELECT * FROM batches WHERE {' AND '.join(where)} "
                        "ORDER BY created_at DESC, rowid DESC LIMIT ?", (*args, limit))
    return [dict(r) for r in rows]


def update_batch(conn: sqlite3.Connection, batch_id: str, **values: Any) -> None:
    sets = ", ".join(f"{name} = ?" for name in values)
    conn.execute(f"UPDATE batches SET {sets} WHERE id = ?", (*values.values(), batch_id))


def unfinished_batches(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Batches a runner still has work on (validating, in progress, finalizing, cancelling;
    or ended at a provider, its usage not counted yet)."""
    rows = conn.execute("SELECT * FROM batches WHERE status IN "
                        "('validating', 'in_progress', 'finalizing', 'cancelling') "
                        "OR accounted = 0 ORDER BY created_at")
    return [dict(r) for r in rows]


def mark_accounted(conn: sqlite3.Connection, batch_id: str) -> None:
    """A provider-native batch's usage is counted."""
    update_batch(conn, batch_id, accounted=1)


def provider_files_left(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Ended provider-native batches whose files at the provider are not all deleted yet."""
    rows = conn.execute("SELECT id, provider, provider_files FROM batches WHERE "
                        "provider_files IS NOT NULL ORDER BY created_at")
    return [dict(r) for r in rows]


def claim_batch(conn: sqlite3.Connection, batch_id: str, runner: str, now: float,
                lease: float, dead: Iterable[str] = ()) -> bool:
    """Take (or renew) the lease on a batch: free, expired, ours, or held by a runner known
    to be gone (``dead``). True when ours."""
    dead = tuple(dead)
    marks = ", ".join("?" * len(dead))
    gone = f" OR runner IN ({marks})" if dead else ""
    return conn.execute(
        "UPDATE batches SET runner = ?, lease_until = ? WHERE id = ? AND (runner IS NULL OR "
        f"runner = ? OR lease_until < ?{gone})",
        (runner, now + lease, batch_id, runner, now, *dead)).rowcount > 0


def done_lines(conn: sqlite3.Connection, batch_id: str) -> set[int]:
    return {r[0] for r in conn.execute("SELECT line FROM batch_results WHERE batch_id = ?",
                                       (batch_id,))}


def save_results(conn: sqlite3.Connection, batch_id: str,
                 results: Iterable[tuple[int, bool, bytes]]) -> tuple[int, int]:
    """Record answered lines (line, ok, encrypted result); a line answered before is kept as
    it was. Returns the batch's (completed, failed) counts afterwards, also written to it."""
    conn.executemany("INSERT OR IGNORE INTO batch_results (batch_id, line, ok, result) "
                     "VALUES (?, ?, ?, ?)",
                     [(batch_id, line, int(ok), blob) for line, ok, blob in results])
    completed, failed = conn.execute(
        "SELECT COALESCE(SUM(ok), 0), COALESCE(SUM(1 - ok), 0) FROM batch_results "
        "WHERE batch_id = ?", (batch_id,)).fetchone()
    update_batch(conn, batch_id, completed=completed, failed=failed)
    return completed, failed


def results(conn: sqlite3.Connection, batch_id: str, ok: bool) -> list[tuple[int, bytes]]:
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT line, result FROM batch_results WHERE batch_id = ? AND ok = ? ORDER BY line",
        (batch_id, int(ok)))]


def drop_results(conn: sqlite3.Connection, batch_id: str) -> None:
    conn.execute("DELETE FROM batch_results WHERE batch_id = ?", (batch_id,))
