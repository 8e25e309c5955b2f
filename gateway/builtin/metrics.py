"""Built-in plugin: each request's RequestRecord counted in /metrics (gateway/request_stats.py):
requests by route, target, key and status; latency and time-to-first-byte histograms; tokens and
cost; retries, fallbacks and cache results. Off with `observability.metrics: false` (then the
request path pays nothing for it).

Labels stay bounded: routes and targets are the config's (a model name nobody configured, or a
target no route reaches, counts as "other"); key names are the config's plus, for keys made at
run time (`gateway keys create`, POST /admin/keys), the first MAX_RUNTIME_KEYS seen by this
process. An empty value means there was none (a request refused before naming a route).
"""

from __future__ import annotations

from typing import Iterable

from .. import hookimpl
from ..hookspecs import PluginContext
from ..request_record import RequestRecord
from ..request_stats import OTHER, STATS

MAX_RUNTIME_KEYS = 100


class Labels:
    """Maps a record's route, target and key to label values the config bounds."""

    def __init__(self, routes: Iterable[str], targets: Iterable[str], keys: Iterable[str],
                 runtime_keys: set[str]):
        self.routes = frozenset(routes) | {""}
        self.targets = frozenset(targets) | {"", "cache"}
        self.keys = frozenset(keys) | {""}
        self.runtime_keys = runtime_keys  # kept across reloads: the cap is the process's

    def route(self, name: str) -> str:
        return name if name in self.routes else OTHER

    def target(self, name: str | None) -> str:
        name = name or ""
        return name if name in self.targets else OTHER

    def key(self, name: str | None) -> str:
        name = name or ""
        if name in self.keys or name in self.runtime_keys:
            return name
        if len(self.runtime_keys) < MAX_RUNTIME_KEYS:  # authenticated: a key an admin made
            self.runtime_keys.add(name)
            return name
        return OTHER


class RecordMetrics:
    """request_finished: a few increments per request (the children are bound once)."""

    wants_bodies = False

    def __init__(self, labels: Labels):
        self.labels = labels

    def __call__(self, record: RequestRecord) -> None:
        labels = self.labels
        route, target = labels.route(record.route), labels.target(record.target)
        series = STATS.series(route, target, labels.key(record.key), str(record.status))
        series.requests.inc()
        if record.native_batch is None:  # a provider batch's line has no latency of its own
            series.latency.observe(record.latency_ms / 1000)
        if record.ttfb_ms is not None:
            series.ttfb.observe(record.ttfb_ms / 1000)
        if record.tokens_in:
            series.tokens_in.inc(record.tokens_in)
        if record.tokens_out:
            series.tokens_out.inc(record.tokens_out)
        if record.cost_usd:
            series.cost.inc(record.cost_usd)
        if len(record.attempts) > 1:
            retries, fallbacks = record.retries, record.fallbacks
            if retries:
                STATS.child(STATS.retries, route).inc(retries)
            if fallbacks:
                STATS.child(STATS.fallbacks, route).inc(fallbacks)
        if record.cache is not None:
            STATS.child(STATS.cache, route, record.cache).inc()


def labels_of(context: PluginContext) -> Labels:
    providers = context.gateway_config.get("providers") or {}
    routes = set(context.routes) | {f"passthrough/{p}" for p in providers}
    targets = {t.label for reachable in context.targets.values() for t in reachable}
    targets |= {f"{p}/passthrough" for p in providers}
    keys = {spec.name for spec in context.keys_by_hash.values()}
    return Labels(routes, targets, keys, context.state.acquire("metrics:runtime_keys", set))


@hookimpl
def request_finished(config: dict, context: PluginContext) -> RecordMetrics | None:
    observability = context.gateway_config.get("observability") or {}
    if not observability.get("metrics", True):
        return None
    return RecordMetrics(labels_of(context))
