"""Per-request numbers for /metrics: requests, latency, time to first byte, tokens, cost,
retries, fallbacks, cache results, rate-limit refusals, budget spend and the gateway's overhead.

They are prometheus-client metrics, so with `--workers N` they can live in memory-mapped files
that every worker writes its own of and any worker reads all of (prometheus-client's
multiprocess mode): a scrape, whichever worker answers it, covers every worker and the
counters never go back. With one worker they stay plain in-process values.

The process holds one set (``STATS``), kept across reloads; who counts what is the plugins'
business (gateway/builtin/metrics.py counts each RequestRecord, the limits count refusals and
budget spend). Label values must come from the config (routes, targets, keys): callers map
anything else to ``OTHER`` so the number of series stays bounded.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# Seconds of gateway overhead (time in the gateway itself, upstream time excluded).
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
# Seconds from arrival to the whole answer (a stream: its last byte), and to the first byte.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
TTFB_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER = "other"  # the label value of anything the config does not name


class Series:
    """The metric children of one (route, target, key, status), bound once and reused: a
    request then costs a few increments, no label lookups."""

    __slots__ = ("requests", "latency", "ttfb", "tokens_in", "tokens_out", "cost")

    def __init__(self, stats: "RequestStats", route: str, target: str, key: str, status: str):
        self.requests = stats.requests.labels(route, target, key, status)
        self.latency = stats.latency.labels(route, target)
        self.ttfb = stats.ttfb.labels(route, target)
        self.tokens_in = stats.tokens.labels(route, target, key, "in")
        self.tokens_out = stats.tokens.labels(route, target, key, "out")
        self.cost = stats.cost.labels(route, target, key)


class RequestStats:
    def __init__(self) -> None:
        self.shared_dir: str | None = None
        self._build()

    def _build(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("gateway_requests", "Requests answered, by route, target that "
                                "answered, key and status", ["route", "target", "key", "status"],
                                registry=registry)
        self.latency = Histogram("gateway_request_duration_seconds", "Arrival to the whole "
                                 "answer (a stream: to its last byte)", ["route", "target"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.ttfb = Histogram("gateway_time_to_first_byte_seconds", "Arrival to the first byte "
                              "of the answer's body", ["route", "target"], buckets=TTFB_BUCKETS,
                              registry=registry)
        self.tokens = Counter("gateway_tokens", "Tokens in (prompt) and out (completion)",
                              ["route", "target", "key", "direction"], registry=registry)
        self.cost = Counter("gateway_cost_usd", "Cost of the answers in USD (the price table)",
                            ["route", "target", "key"], registry=registry)
        self.retries = Counter("gateway_retries", "Upstream calls that repeated the target "
                               "before them", ["route"], registry=registry)
        self.fallbacks = Counter("gateway_fallbacks", "Moves to another target within a request",
                                 ["route"], registry=registry)
        self.cache = Counter("gateway_cache_results", "Requests the response cache looked at, "
                             "by route and result (hit, miss, skip)", ["route", "result"],
                             registry=registry)
        self.limited = Counter("gateway_rate_limited", "Requests the gateway refused with 429, by "
                               "route and reason (rate_limit, budget)", ["route", "reason"],
                               registry=registry)
        self.budget_spend = Counter("gateway_budget_spend_usd", "USD counted against budgets, by "
                                    "budget (key:NAME, team:NAME)", ["budget"], registry=registry)
        self.overhead = Histogram(
            "gateway_overhead_seconds", "Time spent in the gateway itself, upstream time excluded",
            buckets=OVERHEAD_BUCKETS, registry=registry)
        self._series: dict[tuple[str, str, str, str], Series] = {}
        self._children: dict[tuple[Any, ...], Any] = {}
        self._budget_spend: dict[str, float] = {}  # budget -> USD not yet in budget_spend

    def series(self, route: str, target: str, key: str, status: str) -> Series:
        labels = (route, target, key, status)
        found = self._series.get(labels)
        if found is None:
            found = self._series[labels] = Series(self, route, target, key, status)
        return found

    def child(self, metric: Counter, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached (a dict lookup instead of prometheus' checks)."""
        cache_key = (id(metric), *labels)
        found = self._children.get(cache_key)
        if found is None:
            found = self._children[cache_key] = metric.labels(*labels)
        return found

    def add_budget_spend(self, budget: str, usd: float) -> None:
        """Count ``usd`` against ``budget`` (key:NAME, team:NAME) in gateway_budget_spend_usd,
        later: added up here per request and handed to prometheus in bulk by
        flush_budget_spend, which the usage flush calls once a second and a scrape calls
        first. A prometheus increment costs more than a dict's (in multiprocess mode it
        writes a memory-mapped file), so the metric can lag up to a second behind the
        budget counters; a scrape answered by another worker may miss this worker's last
        second."""
        spend = self._budget_spend
        spend[budget] = spend.get(budget, 0.0) + usd

    def flush_budget_spend(self) -> None:
        """Add the spend counted since the last flush to gateway_budget_spend_usd."""
        if not self._budget_spend:
            return
        spend, self._budget_spend = self._budget_spend, {}
        for budget, usd in spend.items():
            self.child(self.budget_spend, budget).inc(usd)

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

    def collect(self) -> Iterator[Any]:
        """The metric families for a scrape: every worker's when shared, else this process's
        (without the `_created` series, which only the in-process store has)."""
        self.flush_budget_spend()
        if self.shared_dir is not None:
            yield from MultiProcessCollector(None, self.shared_dir).collect()
            return
        for family in self.registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


STATS = RequestStats()
