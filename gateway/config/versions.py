"""The config version store: every config a gateway applies, numbered, in SQLite.

One table, ``config_versions`` in ``<server.data_dir>/gateway.db`` (sqlite-utils, WAL,
created by the Migrations set in store/gateway_db.py so later columns come as migrations):

    number        INTEGER PRIMARY KEY  1, 2, 3, ... (survive restarts: they come from here)
    sha256        TEXT   of the file, or of the file and its includes together
    applied_at    TEXT   ISO 8601 UTC
    source        TEXT   startup | file | admin | rollback
    path          TEXT   the config file (absolute)
    environment   TEXT   the environments: overlay in effect, or NULL
    restored_from INTEGER  for a rollback: the version whose text was restored
    git_commit    TEXT   HEAD of the work tree the file sits in, or NULL
    git_dirty     INTEGER  1 when the file (or an include) differs from HEAD, NULL outside git
    text          TEXT   the file as written: ${VAR} and secret:NAME stay references
    files         TEXT   JSON {name relative to the file's folder: text} of included files
    config        TEXT   the config the version belongs to: ``server.name`` when set, else the
                         config file's absolute path; NULL: unknown (see below)

Several configs may share one data_dir (every config in a folder gets ``.gateway/``), so each
version belongs to a config identity, and a store opened for one config (``VersionStore(dir,
config=...)``) lists, dedups and numbers against that config's versions. Numbers stay unique
across the whole store, so "version 7" never means two things. Rows written before identities
existed get the identity of the path they recorded (migration m002); a row without one is an
"unknown config" version: listed, but restored only on request (``--force``).

A config identical (same sha256 and environment) to its latest version is not a new version:
``record`` returns that number instead, atomically (BEGIN IMMEDIATE), so several worker
processes applying the same file agree on one number.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from sqlite_utils import Database

from ..store import gateway_db, sqlite
from ..store.gateway_db import migrations
from ..units import iso_utc as _iso
from .git import git_info  # noqa: F401  (re-exported: rollback and the CLI import it here)
from .loader import LoadedConfig, Reader

DB_NAME = gateway_db.FILE
SOURCES = ("startup", "file", "admin", "rollback")


def config_identity(config_path: str, name: str | None = None) -> str:
    """Which config versions belong to: ``server.name`` when set, else the file's absolute path
    (symlinks are not followed: a ConfigMap swap keeps the identity)."""
    return name or os.path.abspath(config_path)


def identity_for(config_path: str, data: Any) -> str:
    """``config_identity`` from loaded (not necessarily valid) config data."""
    server = data.get("server") if isinstance(data, dict) else None
    name = server.get("name") if isinstance(server, dict) else None
    return config_identity(config_path, name if isinstance(name, str) and "${" not in name
                           else None)


@dataclass(frozen=True)
class Version:
    number: int
    sha256: str
    applied_at: str
    source: str
    path: str
    environment: str | None
    restored_from: int | None
    git_commit: str | None
    git_dirty: bool | None
    text: str = ""
    files: Mapping[str, str] = field(default_factory=dict)
    config: str | None = None  # the identity it belongs to; None: unknown

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Version":
        dirty = row.get("git_dirty")
        return cls(
            number=row["number"], sha256=row["sha256"], applied_at=row["applied_at"],
            source=row["source"], path=row.get("path") or "", environment=row.get("environment"),
            restored_from=row.get("restored_from"), git_commit=row.get("git_commit"),
            git_dirty=None if dirty is None else bool(dirty), text=row.get("text") or "",
            files=json.loads(row["files"]) if row.get("files") else {},
            config=row.get("config"),
        )

    def summary(self) -> dict[str, Any]:
        """Everything but the texts (for lists)."""
        return {
            "number": self.number, "sha256": self.sha256, "applied_at": self.applied_at,
            "source": self.source, "path": self.path, "environment": self.environment,
            "restored_from": self.restored_from, "git_commit": self.git_commit,
            "git_dirty": self.git_dirty, "includes": sorted(self.files),
            "config": self.config,
        }

    def reader(self, config_path: str) -> Reader:
        """Reads this version's included files from the store instead of the disk."""
        return bundle_reader(config_path, self.files)


def bundle_reader(config_path: str, files: Mapping[str, str]) -> Reader:
    base = os.path.dirname(config_path) or "."

    def read(path: str) -> bytes:
        name = os.path.relpath(path, base).replace(os.sep, "/")
        if name not in files:
            raise FileNotFoundError(errno.ENOENT, "not part of the stored version", path)
        return files[name].encode("utf-8")

    return read


class StoreError(Exception):
    """The version store cannot be read or written; the message says where and why."""


class VersionStore:
    """Config versions in ``<data_dir>/gateway.db``. Opens a connection per call: versions are
    written a few times a day, never on the request path.

    ``config``: the identity of the config asking (``config_identity``); lists and ``latest``
    then cover its versions (and unknown ones), not other configs'. None: every version."""

    def __init__(self, data_dir: str, config: str | None = None):
        self.data_dir = data_dir
        self.path = gateway_db.path(data_dir)
        self.config = config

    def exists(self) -> bool:
        return os.path.exists(self.path)

    # -- reading -----------------------------------------------------------------------------

    def list(self, limit: int | None = None, *, everything: bool = False) -> builtins.list[Version]:
        """This config's versions and unknown ones (every version when ``everything`` or no
        config was given), newest first, without their texts."""
        where, params = ("", []) if everything else self._scope(unknown=True)
        sql = ("select number, sha256, applied_at, source, path, environment, restored_from, "
               f"git_commit, git_dirty, files, config from config_versions {where} "
               "order by number desc")
        if limit:
            sql += f" limit {int(limit)}"
        return [Version.from_row(r) for r in self._query(sql, params)]

    def own(self) -> builtins.list[Version]:
        """Only this config's versions, newest first (what --steps counts)."""
        return [v for v in self.list() if self.config is None or v.config == self.config]

    def get(self, number: int) -> Version | None:
        """Version ``number`` whichever config it belongs to (callers check ``config``)."""
        rows = list(self._query("select * from config_versions where number = ?", [number]))
        return Version.from_row(rows[0]) if rows else None

    def latest(self) -> Version | None:
        """This config's newest version."""
        where, params = self._scope(unknown=False)
        rows = list(self._query(
            f"select * from config_versions {where} order by number desc limit 1", params))
        return Version.from_row(rows[0]) if rows else None

    def highest(self) -> int:
        """The highest number in the store, any config's (0 when empty)."""
        rows = list(self._query("select max(number) as n from config_versions"))
        return (rows[0]["n"] or 0) if rows else 0

    def _scope(self, *, unknown: bool) -> tuple[str, builtins.list[Any]]:
        if self.config is None:
            return "", []
        return ("where config = ? or config is null" if unknown else "where config = ?",
                [self.config])

    def _query(self, sql: str, params: builtins.list[Any] | None = None) -> Iterator[dict[str, Any]]:
        if not self.exists():
            return iter(())
        try:
            db = Database(sqlite.connect(self.path))
            try:
                if "config_versions" not in db.table_names():
                    return iter(())
                if "config" not in db.table("config_versions").columns_dict:
                    db.close()
                    db = self._open()  # an older store: migrate it before asking by config
                return iter(list(db.query(sql, params or [])))
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read config versions: {exc}") from exc

    def next_number(self, loaded: LoadedConfig) -> int:
        """The number ``record`` would give ``loaded`` now (to compile it with that number)."""
        last = VersionStore(self.data_dir, identity_of(loaded)).latest()
        if last and last.sha256 == loaded.sha256 and last.environment == loaded.environment:
            return last.number
        return self.highest() + 1

    # -- writing -----------------------------------------------------------------------------

    def record(self, loaded: LoadedConfig, source: str, *, restored_from: int | None = None,
               git: tuple[str | None, bool | None] | None = None) -> tuple[int, bool]:
        """Store ``loaded`` as the newest version of its config; (number, True) when it is new,
        or (number, False) when it is identical to that config's latest version."""
        if source not in SOURCES:
            source = "file"  # SIGHUP and other triggers re-read the file
        commit, dirty = git if git is not None else git_info(
            [loaded.path, *(f.path for f in loaded.includes)])
        row = {
            "sha256": loaded.sha256,
            "applied_at": _iso(time.time()),
            "source": source,
            "path": os.path.abspath(loaded.path),
            "environment": loaded.environment,
            "restored_from": restored_from,
            "git_commit": commit,
            "git_dirty": None if dirty is None else int(dirty),
            "text": loaded.text,
            "files": json.dumps({f.name: f.text for f in loaded.includes}, sort_keys=True),
            "config": identity_of(loaded),
        }
        db = self._open()
        try:
            with db.ensure_autocommit_on():
                db.execute("BEGIN IMMEDIATE")
                try:
                    last = db.execute(
                        "select number, sha256, environment from config_versions "
                        "where config = ? order by number desc limit 1",
                        [row["config"]]).fetchone()
                    if last and last[1] == loaded.sha256 and last[2] == loaded.environment:
                        db.execute("COMMIT")
                        return last[0], False
                    highest = db.execute("select max(number) from config_versions").fetchone()
                    number = (highest[0] or 0) + 1
                    db.table("config_versions").insert({"number": number, **row})
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            return number, True
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot record the config version: {exc}") from exc
        finally:
            db.close()

    def set_git(self, number: int, commit: str | None, dirty: bool | None) -> None:
        self._write("update config_versions set git_commit = ?, git_dirty = ? where number = ?",
                    [commit, None if dirty is None else int(dirty), number])

    def delete(self, number: int) -> None:
        """Forget a version that was recorded but never reached the file (a failed write)."""
        self._write("delete from config_versions where number = ?", [number])

    def _write(self, sql: str, params: builtins.list[Any]) -> None:
        db = self._open()
        try:
            with db.atomic():
                db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot update config versions: {exc}") from exc
        finally:
            db.close()

    def _open(self) -> Database:
        try:
            db = Database(sqlite.connect(self.path))
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the version store: {exc} "
                             "(check server.data_dir and its permissions)") from exc
        try:
            sqlite.migrate(db, migrations)
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"{self.path}: cannot prepare the version store: {exc}") from exc
        return db


def identity_of(loaded: LoadedConfig) -> str:
    return identity_for(loaded.path, loaded.data)


def data_dir_for(config_path: str, data: Any) -> str:
    """``server.data_dir`` resolved as the compiler does (relative to the config file), from
    loaded data; the default ``.gateway`` when it is unset or not a plain string."""
    server = data.get("server") if isinstance(data, dict) else None
    value = server.get("data_dir") if isinstance(server, dict) else None
    if not isinstance(value, str) or not value or "${" in value:
        value = ".gateway"
    return os.path.join(os.path.dirname(os.path.abspath(config_path)), value)

