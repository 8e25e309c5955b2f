"""Restore a stored config version into the config file (and its included files).

The file stays the source of truth: a rollback writes the stored text back, atomically
(a temporary file in the same folder, fsync, rename), and a running gateway reloads it like
any other edit. The version is recorded (source ``rollback``) before the file is written, so
the server, finding it identical to the newest version, applies it under that number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from ..errors import ConfigErrors
from ..store.files import atomic_write
from .compiler import Runtime, compile_loaded
from .loader import LoadedConfig, load_bytes
from .git import git_info
from .versions import StoreError, Version, VersionStore


class RollbackError(Exception):
    """A rollback that cannot be done; the message says why and what to do."""


class VersionNotFound(RollbackError):
    """The version asked for (by number or steps back) is not in the store."""


@dataclass(frozen=True)
class RollbackResult:
    number: int  # the version the file now holds (a new one, source rollback)
    restored_from: int
    sha256: str
    changed: bool  # False: the files already held that text; nothing was written
    written: tuple[str, ...] = ()


class OtherConfig(RollbackError):
    """The version belongs to another config (or to an unknown one): restoring it would write
    that config's text into this file."""


def pick_version(store: VersionStore, version: int | None = None,
                 steps: int | None = None, *, force: bool = False) -> Version:
    """The version to restore: ``version`` by number, or ``steps`` back from the newest (1) of
    the store's config. A version of another config, or of an unknown one, is refused unless
    ``force``."""
    if version is not None:
        found = store.get(version)
        if found is None:
            latest = store.latest()
            have = f"its newest is {latest.number}" if latest else "no versions yet"
            raise VersionNotFound(f"there is no config version {version} in {store.path} "
                                f"({have}); `gateway history` lists them")
        if not force:
            check_owner(store, found)
        return found
    steps = 1 if steps is None else steps
    if steps < 1:
        raise RollbackError("--steps must be 1 or more")
    versions = store.own()
    if len(versions) <= steps:
        raise VersionNotFound(f"cannot go {steps} step(s) back: {store.path} holds "
                            f"{len(versions)} version(s) of this config; `gateway history` "
                            "lists them")
    found = store.get(versions[steps].number)
    assert found is not None
    return found


def check_owner(store: VersionStore, version: Version) -> None:
    """Raise OtherConfig when ``version`` is not one of the store's config's versions."""
    if store.config is None or version.config == store.config:
        return
    if version.config is None:
        raise OtherConfig(
            f"version {version.number} was stored before versions were kept per config, so "
            f"which config it belongs to is unknown (it was applied from "
            f"{version.path or 'an unrecorded path'}); look at it with `gateway diff --against "
            f"{version.number}` and restore it with --force if it is this config's")
    raise OtherConfig(
        f"version {version.number} belongs to another config ({version.config}), not this one "
        f"({store.config}); restoring it would write that config's text into this file. "
        "`gateway history` lists this config's versions (--all: every config in the store); "
        "--force restores it anyway (e.g. after moving the file)")


def check(config_path: str, version: Version, *, environment: str | None = None,
          variables: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load and compile a stored version as it would be served now (current schema, plugins and
    environment variables); raises ConfigErrors when it no longer validates."""
    env = dict(os.environ if variables is None else variables)
    loaded = load_bytes(version.text.encode("utf-8"), config_path, env,
                        environment if environment is not None else
                        (env.get("GATEWAY_ENV") or version.environment),
                        read=version.reader(config_path))
    compile_loaded(loaded, version=version.number, runtime=Runtime())
    return loaded


def rollback(store: VersionStore, config_path: str, version: Version, *,
             environment: str | None = None,
             variables: Mapping[str, str] | None = None) -> RollbackResult:
    """Validate ``version``, record it as the newest version and write it to the files."""
    try:
        loaded = check(config_path, version, environment=environment, variables=variables)
    except ConfigErrors as exc:
        raise RollbackRefused(version.number, exc) from None
    base = os.path.dirname(config_path)
    targets = [(os.path.join(base, *name.split("/")), text)
               for name, text in sorted(version.files.items())]
    targets.append((config_path, version.text))  # the main file last: it is the one watched
    if all(_holds(path, text) for path, text in targets):
        return RollbackResult(version.number, version.number, version.sha256, False)
    number, new = store.record(loaded, "rollback", restored_from=version.number,
                               git=(None, None))
    written = []
    try:
        for path, text in targets:
            if not _holds(path, text):
                write_atomically(path, text)
                written.append(path)
    except OSError as exc:
        problem = f"cannot write {exc.filename or config_path}: {exc.strerror or exc}"
        if not written:
            if new:
                store.delete(number)
            raise RollbackError(f"{problem}; nothing was changed") from exc
        raise RollbackError(f"{problem}; already restored: {', '.join(written)}") from exc
    if new:
        try:
            store.set_git(number, *git_info([config_path, *(f.path for f in loaded.includes)]))
        except StoreError:
            pass  # the version is recorded; only its git details are missing
    return RollbackResult(number, version.number, version.sha256, True, tuple(written))


class RollbackRefused(RollbackError):
    """The stored version does not validate any more; ``errors`` says where."""

    def __init__(self, number: int, exc: ConfigErrors):
        self.number = number
        self.errors = exc.errors
        super().__init__(
            f"version {number} no longer validates ({len(exc.errors)} error(s)); the config "
            "file was not changed. Fix the errors below in a new edit instead of rolling back:\n"
            + "\n".join(str(e) for e in exc.errors))


def _holds(path: str, text: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read() == text.encode("utf-8")
    except OSError:
        return False


def write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text``: a temporary file in the same folder, fsync, rename.
    Readers see the old file or the new one, never a mix; the file's mode is kept."""
    atomic_write(path, text.encode("utf-8"))
