"""Files written whole: a temporary file in the same folder, fsync, rename, fsync the folder.
A reader in any process sees the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import tempfile

NEW_FILE_MODE = 0o644


def atomic_write(path: str, data: bytes, *, mode: int | None = None,
                 exclusive: bool = False) -> bool:
    """Replace ``path`` with ``data``. ``mode``: the new file's mode (set before any byte is
    written, so a secret is never readable by others); None keeps the mode of the file it
    replaces (0644 for a new one). ``exclusive``: create only if ``path`` does not exist
    (a hard link that fails when it does); returns False then, True when written."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = NEW_FILE_MODE
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)
    return True


def fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
