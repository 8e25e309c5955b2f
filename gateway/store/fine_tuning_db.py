"""``fine_tuning.db``: the fine-tuning jobs passed through to providers (/v1/fine_tuning/jobs):
per job, the key that owns it (by its SHA-256; '' when the gateway needs no key), the route and
provider it went to, the provider's ids of the job and of the files uploaded for it, and the
job as last seen (in OpenAI's shape, with the gateway's ids)."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from sqlite_utils import Database, Migrations

from .sqlite import connect_migrated

FILE = "fine_tuning.db"

migrations = Migrations("gateway.fine_tuning")

COLUMNS = ("id", "owner", "owner_name", "route", "provider", "provider_job_id",
           "training_file", "validation_file", "provider_training_file",
           "provider_validation_file", "created_at", "status", "job")


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE)


@migrations()
def m001_jobs(db: Database) -> None:
    db.execute("""
    CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        owner_name TEXT,
        route TEXT NOT NULL,
        provider TEXT NOT NULL,
        provider_job_id TEXT NOT NULL,
        training_file TEXT NOT NULL,
        validation_file TEXT,
        provider_training_file TEXT NOT NULL,
        provider_validation_file TEXT,
        created_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        job TEXT NOT NULL
    )""")
    db.execute("CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, created_at)")


@migrations()
def m002_provider_files(db: Database) -> None:
    """The files a job keeps at the provider still to delete there (JSON list of the
    provider's file ids; NULL: none, not ended yet, or kept)."""
    db.execute("ALTER TABLE jobs ADD COLUMN provider_files TEXT")


def connect(file: str) -> sqlite3.Connection:
    conn = connect_migrated(file, migrations)
    conn.row_factory = sqlite3.Row
    return conn


def insert(conn: sqlite3.Connection, record: dict[str, Any]) -> None:
    conn.execute(f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                 [record.get(c) for c in COLUMNS])


def get(conn: sqlite3.Connection, job_id: str, owner: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM jobs WHERE id = ? AND owner = ?", (job_id, owner)).fetchone()
    return None if row is None else dict(row)


def page(conn: sqlite3.Connection, owner: str, after: str | None, limit: int) -> list[dict[str, Any]]:
    """``owner``'s jobs, newest first, from the one after ``after``."""
    where, args = ["owner = ?"], [owner]
    if after is not None:
        mark = conn.execute("SELECT created_at, rowid FROM jobs WHERE id = ? AND owner = ?",
                            (after, owner)).fetchone()
        if mark is not None:
            where.append("(created_at, rowid) < (?, ?)")
            args.extend([mark["created_at"], mark["rowid"]])
    rows = conn.execute(f"SELECT * FROM jobs WHERE {' AND '.join(where)} "
                        "ORDER BY created_at DESC, rowid DESC LIMIT ?", (*args, limit))
    return [dict(r) for r in rows]


def update(conn: sqlite3.Connection, job_id: str, status: str, job: str,
           provider_files: str | None = None) -> None:
    """The job as last seen; with ``provider_files`` (it has just ended), what to delete."""
    if provider_files is None:
        conn.execute("UPDATE jobs SET status = ?, job = ? WHERE id = ?", (status, job, job_id))
    else:
        conn.execute("UPDATE jobs SET status = ?, job = ?, provider_files = ? WHERE id = ?",
                     (status, job, provider_files, job_id))


def set_provider_files(conn: sqlite3.Connection, job_id: str, provider_files: str | None) -> None:
    conn.execute("UPDATE jobs SET provider_files = ? WHERE id = ?", (provider_files, job_id))


def unfinished(conn: sqlite3.Connection, ended: tuple[str, ...]) -> list[dict[str, Any]]:
    """Jobs (any owner) not ``ended`` yet, or ended with files at the provider to delete."""
    marks = ", ".join("?" * len(ended))
    rows = conn.execute(f"SELECT * FROM jobs WHERE status NOT IN ({marks}) OR provider_files "
                        "IS NOT NULL ORDER BY created_at", ended)
    return [dict(r) for r in rows]
