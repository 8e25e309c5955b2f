"""``gateway.db``: the config versions (see config/versions.py for what a version is).

Older versions also kept virtual keys and usage here; those move to ``keys.db`` and
``usage.db`` (see legacy.py)."""

from __future__ import annotations

import os

from sqlite_utils import Database, Migrations

FILE = "gateway.db"

migrations = Migrations("gateway.config_versions")


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE)


@migrations()
def m001_config_versions(db: Database) -> None:
    db.table("config_versions").create(
        {
            "number": int, "sha256": str, "applied_at": str, "source": str, "path": str,
            "environment": str, "restored_from": int, "git_commit": str, "git_dirty": int,
            "text": str, "files": str,
        },
        pk="number",
        not_null={"sha256", "applied_at", "source", "text", "files"},
    )
    db.table("config_versions").create_index(["sha256"])


@migrations()
def m002_config_identity(db: Database) -> None:
    """Versions belong to a config. Before, the identity was the recorded path; rows without
    one stay NULL (unknown config)."""
    db.table("config_versions").add_column("config", str)
    db.execute("update config_versions set config = path where path is not null and path != ''")
    db.table("config_versions").create_index(["config", "number"])
