"""Streaming checks on raw asyncio connections, the same for every system.

- ``measure_gaps``: the upstream sends SSE chunks a known delay apart (a ``slow-<MS>x<N>`` model);
  the client stamps the arrival of each event carrying content. A system that forwards chunks as
  they arrive keeps the gaps at the upstream's delay; one that buffers delivers events together
  (gaps near 0) or late.
- ``soak``: many slow streams at once (1,000 by default, a chunk every 100 ms for 10 s), with the
  system's RSS sampled from /proc throughout: are they all served, and how much memory do they take?
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import procs
from .probe import ProbeError, chat_body

PATH = "/v1/chat/completions"


def request_bytes(port: int, model: str, headers: Mapping[str, str] | None) -> bytes:
    body = chat_body(model, stream=True)
    head = f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def _has_content(event: bytes) -> bool:
    """Whether an SSE event is a chat.completion.chunk with some delta content."""
    data = b"\n".join(line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:"))
    if not data or data == b"[DONE]":
        return False
    try:
        chunk = json.loads(data)
        return any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices") or ())
    except (ValueError, AttributeError, TypeError):
        return False


def dechunk(raw: bytes) -> bytes | None:
    """The body of an HTTP/1.1 chunked payload; None while it is not complete."""
    out, pos = bytearray(), 0
    while True:
        eol = raw.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(raw[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(out) if raw.endswith(b"\r\n\r\n", eol) else None
        start = eol + 2
        if len(raw) < start + size + 2:
            return None
        out += raw[start : start + size]
        pos = start + size + 2


# -- chunks forwarded as they arrive --------------------------------------------------------------


@dataclass
class Gaps:
    delay_ms: float  # the upstream's pause between chunks
    chunks: int  # chunks per stream
    streams: int
    gaps_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def p50_ms(self) -> float | None:
        return statistics.median(self.gaps_ms) if self.gaps_ms else None

    @property
    def min_ms(self) -> float | None:
        return min(self.gaps_ms) if self.gaps_ms else None

    @property
    def max_ms(self) -> float | None:
        return max(self.gaps_ms) if self.gaps_ms else None

    @property
    def ok(self) -> bool:
        """No errors, no two chunks delivered together (every gap at least a quarter of the delay),
        and the median gap within 20 % of the delay. A quarter, not more: a system that holds only
        the first event back (Portkey waits 25 ms before it) shortens the first gap without
        buffering anything; that delay shows in time to first byte."""
        return (
            not self.errors
            and len(self.gaps_ms) == self.streams * (self.chunks - 1)
            and self.min_ms >= 0.25 * self.delay_ms
            and abs(self.p50_ms - self.delay_ms) <= 0.2 * self.delay_ms
        )

    def summary(self) -> dict:
        return {
            "delay_ms": self.delay_ms, "chunks": self.chunks, "streams": self.streams,
            "p50_ms": self.p50_ms, "min_ms": self.min_ms, "max_ms": self.max_ms,
            "errors": self.errors, "ok": self.ok,
        }


async def _stream_arrivals(reader: asyncio.StreamReader) -> list[float]:
    """Read one chunked SSE reply; return when each event with content arrived (perf_counter)."""
    arrivals, pending = [], b""
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return arrivals
        data = (await reader.readexactly(size + 2))[:-2]
        now = time.perf_counter()
        pending += data.replace(b"\r\n", b"\n")
        *events, pending = pending.split(b"\n\n")
        arrivals += [now for event in events if _has_content(event)]


async def measure_gaps(
    port: int, model: str, delay_ms: float, chunks: int, headers: Mapping[str, str] | None = None,
    streams: int = 3, timeout_s: float = 30,
) -> Gaps:
    """Stream ``streams`` replies of ``model`` one after the other on one connection and collect
    the gaps between consecutive content events."""
    result = Gaps(delay_ms, chunks, streams)
    request = request_bytes(port, model, headers)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(streams):
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
            if _status(head) != 200 or b"chunked" not in head.lower():
                raise ProbeError(f"not a 200 chunked stream: {head[:200]!r}")
            arrivals = await asyncio.wait_for(_stream_arrivals(reader), timeout_s)
            if len(arrivals) != chunks:
                result.errors.append(f"{len(arrivals)} content events instead of {chunks}")
            result.gaps_ms += [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:])]
    except (ProbeError, OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
        result.errors.append(repr(exc))
    finally:
        writer.close()
    return result


# -- many slow streams at once --------------------------------------------------------------------


@dataclass
class Soak:
    streams: int
    chunks: int
    ok: int = 0
    errors: Counter = field(default_factory=Counter)
    durations_s: list[float] = field(default_factory=list)
    peak_open: int = 0  # streams whose reply had started and not ended, at most at once
    rss_before_mib: float = 0.0
    rss_peak_mib: float = 0.0
    rss_after_mib: float = 0.0
    rss_worker_peak_mib: float = 0.0  # the largest single process
    cpu_s: float = 0.0
    wall_s: float = 0.0

    @property
    def growth_mib(self) -> float:
        return self.rss_peak_mib - self.rss_before_mib

    def summary(self) -> dict:
        return {
            "streams": self.streams, "chunks": self.chunks, "ok": self.ok, "errors": dict(self.errors),
            "peak_open": self.peak_open,
            "duration_p50_s": statistics.median(self.durations_s) if self.durations_s else None,
            "duration_max_s": max(self.durations_s) if self.durations_s else None,
            "rss_before_mib": self.rss_before_mib, "rss_peak_mib": self.rss_peak_mib,
            "rss_after_mib": self.rss_after_mib, "rss_worker_peak_mib": self.rss_worker_peak_mib,
            "growth_mib": self.growth_mib, "cpu_s": self.cpu_s, "wall_s": self.wall_s,
        }


def _rss(pgid: int) -> tuple[float, float]:
    """(total, largest process) RSS of a process group, in MiB."""
    sizes = procs.rss_by_pid(pgid).values()
    return sum(sizes) / 2**20, max(sizes, default=0) / 2**20


async def soak(
    port: int, model: str, chunks: int, pgid: int, headers: Mapping[str, str] | None = None,
    streams: int = 1000, ramp_s: float = 1.0, timeout_s: float = 60.0,
) -> Soak:
    """Open ``streams`` connections over ``ramp_s`` seconds, each streaming one reply of ``model``
    (``chunks`` content events expected), all within ``timeout_s``; sample the RSS of the process
    group ``pgid`` every 100 ms."""
    result = Soak(streams, chunks)
    request = request_bytes(port, model, headers)
    open_now = 0

    async def one(index: int) -> None:
        nonlocal open_now
        await asyncio.sleep(index * ramp_s / streams)
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            result.errors["connect"] += 1
            return
        counted = False
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if _status(head) != 200:
                result.errors[f"status {_status(head)}"] += 1
                return
            open_now += 1
            counted = True
            result.peak_open = max(result.peak_open, open_now)
            raw = bytearray()
            while True:
                data = await reader.read(65536)
                if not data:
                    result.errors["closed early"] += 1
                    return
                raw += data
                body = dechunk(raw) if raw.endswith(b"0\r\n\r\n") else None
                if body is not None:
                    break
            events = body.replace(b"\r\n", b"\n").split(b"\n\n")
            content = sum(_has_content(event) for event in events)
            if content != chunks or b"data: [DONE]" not in body:
                result.errors["incomplete"] += 1
                return
            result.ok += 1
            result.durations_s.append(time.perf_counter() - started)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            result.errors[type(exc).__name__] += 1
        finally:
            if counted:
                open_now -= 1
            writer.close()

    async def sample(stop: asyncio.Event) -> None:
        while not stop.is_set():
            total, largest = _rss(pgid)
            result.rss_peak_mib = max(result.rss_peak_mib, total)
            result.rss_worker_peak_mib = max(result.rss_worker_peak_mib, largest)
            try:
                await asyncio.wait_for(stop.wait(), 0.1)
            except asyncio.TimeoutError:
                pass

    result.rss_before_mib, _ = _rss(pgid)
    cpu_before, started = procs.cpu_seconds(pgid), time.monotonic()
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(stop))
    tasks = [asyncio.create_task(one(i)) for i in range(streams)]
    _, late = await asyncio.wait(tasks, timeout=timeout_s)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    result.errors.update({"timeout": len(late)} if late else {})
    result.wall_s = time.monotonic() - started
    result.cpu_s = procs.cpu_seconds(pgid) - cpu_before
    stop.set()
    await sampler
    await asyncio.sleep(1.0)  # let the system release what the streams held
    result.rss_after_mib, _ = _rss(pgid)
    return result
