"""Run wrk with post.lua and parse the BENCH_RESULT line that its done() hook prints."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).with_name("post.lua")
MARKER = "BENCH_RESULT "
# One wrk thread: its C event loop outruns any Python server, and on a 2-core machine the second
# core is better left to the system under test and the fake upstream.
THREADS = 1
TIMEOUT = "5s"  # a reply slower than this counts as a timeout error


class WrkError(Exception):
    """wrk failed or printed no BENCH_RESULT line."""


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # connect + read + write + timeout errors, plus replies with status >= 400

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def available() -> bool:
    return shutil.which("wrk") is not None


def command(
    url: str, body: str, connections: int, duration_s: float, headers: Mapping[str, str] | None = None
) -> list[str]:
    """wrk's argv; post.lua reads BODY, PATH ("": the URL's) and "Name: value" headers after `--`."""
    argv = [
        "wrk", f"-t{min(THREADS, connections)}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
        f"--timeout={TIMEOUT}", "-s", str(LUA), url, "--", body,
    ]
    if headers:
        argv += ["", *(f"{name}: {value}" for name, value in headers.items())]
    return argv


def parse(output: str) -> WrkResult:
    """Read wrk's stdout; only the BENCH_RESULT line matters."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            return WrkResult(
                requests=data["requests"],
                duration_s=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                errors=sum(data["errors"].values()),
            )
    raise WrkError(f"no {MARKER.strip()} line in wrk output:\n{output}")


def run(
    url: str, body: str, connections: int, duration_s: float, headers: Mapping[str, str] | None = None
) -> WrkResult:
    argv = command(url, body, connections, duration_s, headers)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 30)
    except subprocess.TimeoutExpired:
        raise WrkError(f"wrk did not finish within {duration_s + 30:.0f} s") from None
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {done.stderr or done.stdout}")
    return parse(done.stdout)
