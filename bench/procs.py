"""Processes the benchmark starts: start in their own process group, stop by PID, sample CPU and RSS.

Each process is started in a new session, so its PID is also its process-group id: stopping it
signals the whole group (workers included) and CPU/RSS are summed over the group's live members.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    """A started process, its log file, and how to stop it."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, cwd: Path | None = None, env: dict | None = None,
        append: bool = False,
    ):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab" if append else "wb")
        try:
            self.popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after grace_s, reap the process, close the log."""
        try:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait()
            self._signal_group(signal.SIGKILL)  # members that outlive the leader, if any
        finally:
            self._log.close()

    def _signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass


def _group_stats(pgid: int) -> dict[int, list[bytes]]:
    """The /proc/PID/stat fields, from field 3 (state) on, of each live member of a process group."""
    members = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # the command name may hold spaces and ')'
        if int(fields[2]) == pgid:
            members[int(entry.name)] = fields
    return members


def cpu_seconds(pgid: int) -> float:
    """User + system CPU time used so far by the live members of a process group."""
    ticks = sum(int(f[11]) + int(f[12]) for f in _group_stats(pgid).values())  # utime, stime: proc(5) 14, 15
    return ticks / CLOCK_TICKS


def rss_by_pid(pgid: int) -> dict[int, int]:
    """Resident memory (VmRSS, bytes) of each live member of a process group."""
    sizes = {}
    for pid in _group_stats(pgid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        sizes[pid] = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return sizes


def rss_bytes(pgid: int) -> int:
    """Resident memory (VmRSS) summed over the live members of a process group. Forked workers share
    pages with their parent, so for several processes this counts shared pages more than once."""
    return sum(rss_by_pid(pgid).values())


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (never past the hard limit);
    processes started afterwards inherit it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft
