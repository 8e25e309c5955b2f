"""Per-request numbers for /metrics: requests by route and status, and the overhead histogram.

They are prometheus-client metrics, so with `--workers N` they can live in memory-mapped files
that every worker writes its own of and any worker reads all of (prometheus-client's
multiprocess mode): a scrape, whichever worker answers it, covers every worker and the
counters never go back. With one worker they stay plain in-process values.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# Seconds of gateway overhead (time in the gateway itself, upstream time excluded).
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class RequestStats:
    def __init__(self) -> None:
        self.shared_dir: str | None = None
        self._build()

    def _build(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("gateway_requests", "Requests answered, by route and status",
                                ["route", "status"], registry=self.registry)
        self.overhead = Histogram(
            "gateway_overhead_seconds", "Time spent in the gateway itself, upstream time excluded",
            buckets=OVERHEAD_BUCKETS, registry=self.registry)
        self._children: dict[tuple[str, int], Counter] = {}

    def share_across_workers(self) -> str:
        """From now on keep the numbers in a fresh directory (removed when this process exits),
        where every worker forked afterwards writes its own file and a scrape merges them all.
        prometheus-client picks its value store when it is imported, from
        PROMETHEUS_MULTIPROC_DIR: set it, pick again, and rebuild the metrics on that store."""
        directory = tempfile.mkdtemp(prefix="gateway-metrics-")
        atexit.register(shutil.rmtree, directory, True)  # forked workers never run atexit
        os.environ[MULTIPROC_ENV] = directory
        values.ValueClass = values.get_value_class()
        self.shared_dir = directory
        self._build()
        return directory

    def worker_exited(self, pid: int) -> None:
        """prometheus-client's bookkeeping for a dead worker (drops its live gauges)."""
        if self.shared_dir is not None:
            mark_process_dead(pid, self.shared_dir)

    def observe(self, route: str, status: int, overhead_s: float) -> None:
        child = self._children.get((route, status))
        if child is None:
            child = self._children[(route, status)] = self.requests.labels(route, str(status))
        child.inc()
        self.overhead.observe(overhead_s)

    def collect(self):
        """The metric families for a scrape: every worker's when shared, else this process's
        (without the `_created` series, which only the in-process store has)."""
        if self.shared_dir is not None:
            yield from MultiProcessCollector(None, self.shared_dir).collect()
            return
        for family in self.registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


STATS = RequestStats()
