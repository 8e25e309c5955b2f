"""Asking git about the config's repository without running anything the repository controls.

The config directory may be a clone of someone else's work, and its ``.git/config`` can name
programs that git runs on ordinary commands: ``core.fsmonitor`` (on ``git status``), clean
filters (when ``status`` re-reads a file), hooks, pagers, external diff tools. So the gateway
runs only plumbing that executes none of them — ``rev-parse`` and ``cat-file`` — with those
settings turned off as well, the system config ignored, and no ``GIT_*`` variables inherited;
whether a file differs from HEAD is decided by comparing its bytes with the committed blob.
"""

from __future__ import annotations

import os
import subprocess

_SAFE_CONFIG = ("core.fsmonitor=false", "core.hooksPath=/dev/null", "core.pager=cat",
                "core.untrackedCache=false")


def run_git(folder: str, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[bytes]:
    """``git -C folder ARGS`` with repository-controlled programs disabled; bytes out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0",
               GIT_PAGER="cat", PAGER="cat", LC_ALL="C")
    safe = [arg for setting in _SAFE_CONFIG for arg in ("-c", setting)]
    return subprocess.run(["git", "--no-pager", *safe, "-C", folder, *args],
                          capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def committed_blob(folder: str, rev: str, path: str) -> subprocess.CompletedProcess[bytes]:
    """The bytes of ``path`` (relative to ``folder``) at ``rev``, exactly as committed: no
    filters, no textconv."""
    return run_git(folder, "cat-file", "blob", f"{rev}:./{path}", timeout=30)


def git_info(paths: list[str]) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether any of ``paths`` differs from it) when the first path sits in a git
    work tree; (None, None) outside git or when git is not installed."""
    folder = os.path.dirname(os.path.abspath(paths[0])) or "."
    try:
        inside = run_git(folder, "rev-parse", "--is-inside-work-tree")
        if inside.stdout.strip() != b"true":
            return None, None
        head = run_git(folder, "rev-parse", "--verify", "-q", "HEAD")
        commit = head.stdout.decode().strip() if head.returncode == 0 else None
        if commit is None:
            return None, True
        return commit, any(_differs(folder, commit, p) for p in paths)
    except (OSError, subprocess.SubprocessError):
        return None, None


def _differs(folder: str, commit: str, path: str) -> bool:
    rel = os.path.relpath(os.path.abspath(path), folder).replace(os.sep, "/")
    blob = committed_blob(folder, commit, rel)
    if blob.returncode != 0:
        return True  # not in HEAD: new (or outside the repository)
    try:
        with open(path, "rb") as fh:
            return bool(fh.read() != blob.stdout)
    except OSError:
        return True
