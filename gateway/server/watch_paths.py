"""Which paths the config watcher must see change: each config file, every symlink on the way
to it, and the file the links finally point at.

A Kubernetes ConfigMap mount is ``gateway.yaml -> ..data/gateway.yaml`` with ``..data ->
..2026_12_05_xxx``; an update writes a new ``..2026_...`` folder and swaps ``..data`` by a
rename, so nothing named ``gateway.yaml`` changes. A plain ``gateway.yaml -> /etc/gw/real.yaml``
is edited in ``/etc/gw``. Watching every hop (in the folder it sits in) catches both; the
caller resolves the chain again after each change, since a swap points it somewhere new.
"""

from __future__ import annotations

import os
from typing import Iterable

MAX_HOPS = 40  # like the kernel's limit on symlinks in one lookup: a loop ends here

Signature = tuple[tuple[str, tuple[int, int, int, int] | None], ...]


def link_chain(path: str) -> frozenset[str]:
    """``path`` (absolute), every symlink met while resolving it (a link to a file, or a folder
    on the way), and each path the links lead to, the last one free of symlinks."""
    found: set[str] = set()
    current = os.path.abspath(path)
    for _ in range(MAX_HOPS):
        found.add(current)
        link = _first_link(current)
        if link is None:
            break
        found.add(link)
        try:
            target = os.readlink(link)
        except OSError:  # replaced while we looked: the next change re-resolves
            break
        rest = os.path.relpath(current, link) if current != link else ""
        current = os.path.normpath(os.path.join(os.path.dirname(link), target, rest))
    return frozenset(found)


def _first_link(path: str) -> str | None:
    """The shortest prefix of ``path`` that is a symlink, or None."""
    prefix = os.path.sep
    for part in path.split(os.path.sep):
        if not part:
            continue
        prefix = os.path.join(prefix, part)
        if os.path.islink(prefix):
            return prefix
    return None


def watched_paths(files: Iterable[str]) -> frozenset[str]:
    """The link chains of all ``files`` together."""
    out: set[str] = set()
    for file in files:
        out |= link_chain(file)
    return frozenset(out)


def watched_directories(paths: Iterable[str]) -> list[str]:
    """The folders to watch (not recursively) for ``paths``: those that exist and are reached
    without symlinks, so a watch never stays on a folder a swapped link no longer leads to."""
    folders = {os.path.dirname(p) for p in paths}
    return sorted(d for d in folders if os.path.isdir(d) and os.path.realpath(d) == d)


def signature(paths: Iterable[str]) -> Signature:
    """What each path is now (inode, device, size, mtime, without following links): equal
    signatures a moment apart mean nothing was written or swapped in between."""
    out: list[tuple[str, tuple[int, int, int, int] | None]] = []
    for path in sorted(paths):
        try:
            st = os.lstat(path)
        except OSError:
            out.append((path, None))
        else:
            out.append((path, (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)))
    return tuple(out)
