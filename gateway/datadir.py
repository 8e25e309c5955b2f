"""The data directory (``server.data_dir``, default ``.gateway/``) is private to the user that
runs the gateway: it holds config texts, key hashes, usage and the vault.

Every place that creates the directory or opens a SQLite database in it goes through here:
the directory is made 0700 and every database file 0600. SQLite gives its side files (``-wal``,
``-shm``, ``-journal``) the mode of the database, so those follow. A directory or file made
before (by an older version, or with a loose umask) is tightened when it is opened; one the
process does not own is left as it is.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat

DIR_MODE = 0o700
FILE_MODE = 0o600
SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: str) -> str:
    """Create ``path`` (and missing parents) with mode 0700, or tighten it to 0700."""
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    _tighten(path, DIR_MODE)
    return path


def private_file(path: str) -> str:
    """Create ``path`` empty with mode 0600 unless it exists; tighten it to 0600 if it does."""
    private_dir(os.path.dirname(os.path.abspath(path)))
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    _tighten(path, FILE_MODE)
    for suffix in SIDE_FILES:
        _tighten(path + suffix, FILE_MODE)
    return path


def connect(path: str, **options) -> sqlite3.Connection:
    """``sqlite3.connect`` for a database in the data directory, made private first."""
    return sqlite3.connect(private_file(path), **options)


def _tighten(path: str, mode: int) -> None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return
    loose = stat.S_IMODE(st.st_mode) & ~mode
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid() or not loose:
        return
    with contextlib.suppress(OSError):
        os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
