"""Per-request numbers for /metrics, kept as plain counters: the event loop is single-threaded,
so an increment needs no lock, and the collector turns them into Prometheus families at
scrape time."""

from __future__ import annotations

import bisect
from collections import defaultdict

# Seconds of gateway overhead (time in the gateway itself, upstream time excluded).
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class RequestStats:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.overhead_counts = [0] * (len(OVERHEAD_BUCKETS) + 1)
        self.overhead_sum = 0.0

    def observe(self, route: str, status: int, overhead_s: float) -> None:
        self.requests[(route, status)] += 1
        self.overhead_counts[bisect.bisect_left(OVERHEAD_BUCKETS, overhead_s)] += 1
        self.overhead_sum += overhead_s

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus histograms want them, +Inf last."""
        out, running = [], 0
        for bound, count in zip(OVERHEAD_BUCKETS, self.overhead_counts):
            running += count
            out.append((repr(bound), running))
        out.append(("+Inf", running + self.overhead_counts[-1]))
        return out


STATS = RequestStats()
