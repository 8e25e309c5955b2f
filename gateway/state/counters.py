"""Counters behind rate limits and budgets: one interface, several backends.

Two kinds of window:
- sliding (``window > 0``): the sliding-window-counter approximation — the current fixed
  bucket plus the previous one weighted by how much of it still overlaps the window. Two
  numbers per limit, O(1) per check, accurate to within a few percent.
- fixed (``window == 0``): a plain total under a key that already names its period (a budget's
  month, say), or a gauge such as requests in parallel.

``reserve`` checks every limit of a request and, only if all allow it, adds every amount —
atomically, so concurrent requests cannot both take the last unit. ``adjust`` settles a
reservation later (actual tokens and cost), and may be negative.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any



@dataclass(frozen=True, slots=True, eq=False)
class Limit:
    """Compared and hashed by identity (a Verdict's dicts hash each limit per request: the
    default dataclass hash of five fields is a Python call). The rules make each limit once,
    so the same rule is the same object; compare two limits' fields, not the limits."""

    key: str  # stable id of the counter, e.g. "rl:key:research:requests:60"
    limit: float
    window: float  # seconds; 0 for fixed totals and gauges
    kind: str = "requests"  # requests | tokens | usd | parallel: names the headers
    scope: str = ""  # what it limits, for messages: "key 'research'", "route 'chat'", ...


@dataclass(slots=True)
class Verdict:
    """What a reservation found: allowed or not, and per limit what is left."""

    allowed: bool
    blocked: Limit | None = None
    retry_after: float = 0.0
    remaining: dict[Limit, float] = field(default_factory=dict)
    resets: dict[Limit, float] = field(default_factory=dict)  # seconds until it resets


def bucket_of(now: float, window: float) -> int:
    return int(now // window)


def sliding_usage(prev: float, curr: float, now: float, window: float) -> float:
    elapsed = (now % window) / window
    return prev * (1.0 - elapsed) + curr


def retry_after(prev: float, curr: float, amount: float, limit: float, now: float,
                window: float) -> float:
    """Seconds until ``amount`` more would fit, as the previous bucket's weight decays."""
    start = bucket_of(now, window) * window
    if curr + amount > limit:  # not before the current bucket rolls over
        return start + window - now
    if prev <= 0:
        return 0.0
    # prev * (1 - (t - start)/window) + curr + amount <= limit  ->  solve for t
    t = start + window * (1.0 - (limit - curr - amount) / prev)
    return max(0.0, t - now)


class Counters(ABC):
    backend = "memory"  # named in /readyz and /metrics

    @abstractmethod
    async def reserve(self, items: list[tuple[Limit, float]], now: float) -> Verdict: ...

    @abstractmethod
    async def adjust(self, items: list[tuple[Limit, float]], now: float) -> None: ...

    @abstractmethod
    async def total(self, limit: Limit, now: float) -> float:
        """What a limit has used now (a fixed total, or the sliding estimate)."""

    async def aclose(self) -> None:
        return None

    @property
    def healthy(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        """For /readyz and /metrics: the backend and whether it answers."""
        return {"backend": self.backend, "healthy": self.healthy}

    async def refresh(self) -> None:
        """Check the backend when that is due (a remote one), before status() is reported."""
        return None


class MemoryCounters(Counters):
    """In-process counters. Atomic by construction: no await between check and add.

    ``share`` divides every limit, so that N processes each enforcing limit/N cannot exceed
    the limit together (several workers without Redis, or a Redis outage).
    """

    def __init__(self, share: int = 1) -> None:
        self.share = max(1, share)
        # Whether a subclass adds to adjust_now (SqliteCounters marks what changed): else
        # reserve_now adds the amounts itself.
        self._own_adjust = type(self).adjust_now is not MemoryCounters.adjust_now
        self.buckets: dict[tuple[str, int], float] = {}  # (key, bucket) -> amount
        self.totals: dict[str, float] = {}  # fixed windows

    def cap(self, limit: Limit) -> float:
        """This process's part of a limit. Alert markers ("once") are not divided: each
        process may report a crossing, rather than none ever could."""
        return limit.limit if limit.kind == "alert" else limit.limit / self.share

    def usage(self, limit: Limit, now: float) -> tuple[float, float]:
        """(previous, current) amounts of a sliding limit, or (0, total) of a fixed one."""
        if not limit.window:
            return 0.0, self.totals.get(limit.key, 0.0)
        b = bucket_of(now, limit.window)
        return self.buckets.get((limit.key, b - 1), 0.0), self.buckets.get((limit.key, b), 0.0)

    async def reserve(self, items: list[tuple[Limit, float]], now: float) -> Verdict:
        return self.reserve_now(items, now)

    async def total(self, limit: Limit, now: float) -> float:
        prev, curr = self.usage(limit, now)
        return sliding_usage(prev, curr, now, limit.window) if limit.window else curr

    def reserve_now(self, items: list[tuple[Limit, float]], now: float) -> Verdict:
        # One pass per limit, on the request path of every limited request: bucket_of,
        # usage, cap and sliding_usage written out (the same arithmetic, in the same order),
        # and, in this class, the amounts added with the slots the check worked out.
        buckets, totals, share = self.buckets, self.totals, self.share
        divided = share != 1
        remaining: dict[Limit, float] = {}
        resets: dict[Limit, float] = {}
        slots = []
        for limit, amount in items:
            window, key = limit.window, limit.key
            if window:
                bucket = int(now // window)
                # now % window, exactly: bucket * window is within a factor 2 of now (or 0),
                # so the subtraction rounds nothing (Sterbenz); cheaper than divmod's tuple
                phase = now - bucket * window
                here = (key, bucket)
                prev = buckets.get((key, bucket - 1), 0.0)
                curr = buckets.get(here, 0.0)
                used = prev * (1.0 - phase / window) + curr
                resets[limit] = window - phase
                slot: tuple[str, int] | None = here
            else:
                slot = None
                prev, curr = 0.0, totals.get(key, 0.0)
                used = curr
                resets[limit] = 0.0
            cap = limit.limit / share if divided and limit.kind != "alert" else limit.limit
            if amount > 0 and used + amount > cap + 1e-9:
                wait = retry_after(prev, curr, amount, cap, now, window) if window else math.inf
                return Verdict(False, limit, wait, {limit: max(0.0, cap - used)},
                               {limit: wait})
            left = cap - used - amount
            remaining[limit] = left if left > 0.0 else 0.0
            if amount:
                slots.append((slot, key, amount))
        if self._own_adjust:
            self.adjust_now(items, now)
        else:  # what adjust_now does, with the slots worked out above
            for added, key, amount in slots:
                if added is not None:
                    buckets[added] = buckets.get(added, 0.0) + amount
                else:
                    value = totals.get(key, 0.0) + amount
                    totals[key] = value if value > 0.0 else 0.0
            if len(buckets) > 4096:
                self._forget_old(now)
        return Verdict(True, None, 0.0, remaining, resets)

    async def adjust(self, items: list[tuple[Limit, float]], now: float) -> None:
        self.adjust_now(items, now)

    def adjust_now(self, items: list[tuple[Limit, float]], now: float) -> None:
        buckets, totals = self.buckets, self.totals
        for limit, amount in items:
            if not amount:
                continue
            window = limit.window
            if window:
                slot = (limit.key, int(now // window))
                buckets[slot] = buckets.get(slot, 0.0) + amount
            else:
                value = totals.get(limit.key, 0.0) + amount
                totals[limit.key] = value if value > 0.0 else 0.0
        if len(buckets) > 4096:
            self._forget_old(now)

    def _forget_old(self, now: float) -> None:
        """Drop buckets too old to matter (older than the previous one of their window)."""
        stale = [k for k in self.buckets if k[1] < bucket_of(now, _window_of(k[0])) - 1]
        for k in stale:
            del self.buckets[k]


def _window_of(key: str) -> float:
    """Counter keys end with their window in seconds (``...:60``)."""
    try:
        return float(key.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 86400.0
