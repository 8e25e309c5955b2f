"""``audit.db``: the audit trail, an append-only table of admin actions and config changes
whose rows are hash-chained.

Each row holds who (``actor``: ``admin:<token id>``, ``cli:<OS user>``, ``watcher``), what
(``action``, ``subject``, ``details`` as JSON), when (``at``, UTC), and ``hash`` =
sha256(previous row's hash + the row's canonical JSON), the first row chaining from
``GENESIS``. Triggers refuse UPDATE and DELETE; someone who goes around them (drops the
triggers, edits the file) breaks the chain, and ``verify`` names the first row that no longer
fits: edited (its hash no longer matches its content), deleted (its number is missing) or
inserted (its predecessor's hash is not the one it chains from). A cut-off tail leaves no gap:
keep a copy of the last hash (``gateway audit list`` shows it) to detect that.

Appends take the write lock first (BEGIN IMMEDIATE), so several workers and the CLI chain
rows one after the other; ``once`` makes an append idempotent (every worker reloads the same
file; the change is recorded once).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlite_utils import Database, Migrations

from ..logs import get_logger
from .sqlite import connect_migrated

log = get_logger("gateway.audit")

FILE = "audit.db"
GENESIS = "0" * 64
FIELDS = ("id", "at", "actor", "action", "subject", "details", "once_key")

migrations = Migrations("gateway.audit")


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE)


@migrations()
def m001_audit(db: Database) -> None:
    db.table("audit").create(
        {"id": int, "at": str, "actor": str, "action": str, "subject": str, "details": str,
         "once_key": str, "prev_hash": str, "hash": str},
        pk="id", not_null={"at", "actor", "action", "subject", "details", "prev_hash", "hash"},
    )
    db.table("audit").create_index(["once_key"], unique=True)
    db.table("audit").create_index(["at"])
    for verb in ("UPDATE", "DELETE"):
        db.execute(f"CREATE TRIGGER audit_no_{verb.lower()} BEFORE {verb} ON audit BEGIN "
                   f"SELECT RAISE(ABORT, 'the audit trail is append-only'); END")


def canonical(row: dict[str, Any]) -> bytes:
    return orjson.dumps({name: row.get(name) for name in FIELDS}, option=orjson.OPT_SORT_KEYS)


def row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(row)).hexdigest()


def admin_actor(authorization: str, client: str | None = None) -> str:
    """Who called the admin API: ``admin:`` and the first 12 hex digits of the bearer token's
    sha256 (never the token), or, without a token, ``admin:no-token@CLIENT``."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "admin:" + hashlib.sha256(token.strip().encode()).hexdigest()[:12]
    return f"admin:no-token@{client or 'unknown'}"


def cli_actor() -> str:
    """Who ran a `gateway` command: ``cli:`` and the OS user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = f"uid {os.getuid()}"
    return f"cli:{user}"


@dataclass(frozen=True)
class Broken:
    """The first row that does not fit the chain, and why."""

    row: int
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}"


class AuditTrail:
    def __init__(self, data_dir: str):
        self.path = path(data_dir)

    def _connect(self) -> sqlite3.Connection:
        conn = connect_migrated(self.path, migrations)
        conn.row_factory = sqlite3.Row
        return conn

    def append(self, actor: str, action: str, subject: str = "",
               details: dict[str, Any] | None = None, *, once: str | None = None,
               at: datetime | None = None) -> dict[str, Any] | None:
        """Add one row (chained to the last one); None when ``once`` was recorded already."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if once is not None and conn.execute(
                        "select 1 from audit where once_key = ?", (once,)).fetchone():
                    conn.execute("ROLLBACK")
                    return None
                last = conn.execute("select id, hash from audit order by id desc limit 1").fetchone()
                row: dict[str, Any] = {
                    "id": (last["id"] + 1) if last else 1,
                    "at": (at or datetime.now(timezone.utc)).isoformat(timespec="microseconds"),
                    "actor": actor, "action": action, "subject": subject,
                    "details": orjson.dumps(details or {}, option=orjson.OPT_SORT_KEYS).decode(),
                    "once_key": once,
                }
                row["prev_hash"] = last["hash"] if last else GENESIS
                row["hash"] = row_hash(row["prev_hash"], row)
                conn.execute(f"insert into audit ({', '.join(row)}) values "
                             f"({', '.join('?' for _ in row)})", tuple(row.values()))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return row
        finally:
            conn.close()

    def rows(self, since: str | None = None) -> list[dict[str, Any]]:
        """Rows in order, those at or after ``since`` (an ISO time) only when given."""
        if not os.path.exists(self.path):
            return []
        conn = self._connect()
        try:
            query = "select * from audit"
            args: tuple[str, ...] = ()
            if since is not None:
                query, args = query + " where at >= ?", (since,)
            return [dict(r) for r in conn.execute(query + " order by id", args)]
        finally:
            conn.close()

    def verify(self) -> tuple[int, Broken | None]:
        """(rows checked, the first broken row or None)."""
        rows = self.rows()
        prev_hash, expected = GENESIS, 1
        for row in rows:
            if row["id"] != expected:
                missing = f"{expected}" if row["id"] == expected + 1 else f"{expected}-{row['id'] - 1}"
                return len(rows), Broken(row["id"], f"row {missing} is missing (deleted)")
            if row["prev_hash"] != prev_hash:
                return len(rows), Broken(row["id"], "does not chain from the row before it "
                                         "(a row was inserted, or the one before was replaced)")
            if row_hash(row["prev_hash"], row) != row["hash"]:
                return len(rows), Broken(row["id"], "edited: its content no longer matches "
                                         "its hash")
            prev_hash, expected = row["hash"], expected + 1
        return len(rows), None


def record(data_dir: str, actor: str, action: str, subject: str = "",
           details: dict[str, Any] | None = None, *, once: str | None = None) -> None:
    """Append a row; a store that cannot be written is logged, never raised: the action
    itself has happened (in a server, call it in a worker thread)."""
    try:
        AuditTrail(data_dir).append(actor, action, subject, details, once=once)
    except (sqlite3.Error, OSError) as exc:
        log.error("audit_write_failed", action=action, subject=subject, error=str(exc))
