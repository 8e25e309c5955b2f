"""GET /metrics in Prometheus' text format.

Requests and overhead come from request_stats (shared by all workers under `--workers N`).
Everything else is read from this process's runtime state when Prometheus scrapes — breakers,
targets, canaries, provider health, reloads — so the request path pays nothing for it; with
several workers those families carry a `worker` label, as each worker has its own state.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response

from ..graph.nodes import CanaryNode, TargetNode
from ..types import walk
from .alerts import AlertDispatcher
from .reload import Reloader
from ..request_stats import STATS

BREAKER_STATES = ("closed", "half_open", "open")


class GatewayCollector:
    def __init__(self, reloader: Reloader, alerts: AlertDispatcher | None = None):
        self.reloader = reloader
        self.alerts = alerts

    def collect(self):
        graph = self.reloader.holder.current
        now = time.monotonic()
        info = GaugeMetricFamily("gateway_config_version", "Version of the running config")
        info.add_metric([], graph.version)
        yield info
        reloads = CounterMetricFamily("gateway_config_reloads", "Config reloads by outcome",
                                      labels=["outcome"])
        for outcome, count in self.reloader.counts.items():
            reloads.add_metric([outcome], count)
        yield reloads
        if self.alerts is not None:
            alerts = CounterMetricFamily("gateway_alerts", "Alert webhook deliveries by outcome "
                                         "(queued, delivered, failed, dropped: queue full, "
                                         "suppressed: within the cool-down)", labels=["outcome"])
            for outcome, count in self.alerts.counts.items():
                alerts.add_metric([outcome], count)
            yield alerts
        for collector in graph.collectors:  # contributed by plugins (hookspecs)
            yield from collector.collect()

        breaker = GaugeMetricFamily("gateway_breaker_state", "1 for the breaker's current state",
                                    labels=["target", "state"])
        transitions = CounterMetricFamily("gateway_breaker_transitions",
                                          "Circuit breaker transitions", labels=["target", "to"])
        target_requests = CounterMetricFamily("gateway_target_requests",
                                              "Upstream calls per target", labels=["target"])
        errors = CounterMetricFamily("gateway_target_errors", "Failed upstream calls per target",
                                     labels=["target"])
        in_flight = GaugeMetricFamily("gateway_target_in_flight", "Calls in flight per target",
                                      labels=["target"])
        ewma = GaugeMetricFamily("gateway_target_latency_ewma_seconds",
                                 "EWMA of time to first byte per target", labels=["target"])
        canary_share = GaugeMetricFamily("gateway_canary_share_percent", "Current canary share",
                                         labels=["route", "path"])
        arm_requests = CounterMetricFamily("gateway_canary_arm_requests", "Requests per canary arm",
                                           labels=["route", "path", "arm"])
        arm_errors = CounterMetricFamily("gateway_canary_arm_errors", "Errors per canary arm",
                                         labels=["route", "path", "arm"])
        seen = set()
        for name, route in graph.routes.items():
            for node in walk(route.node, stop_at=("route",)):
                if isinstance(node, TargetNode) and node.label not in seen:
                    seen.add(node.label)
                    state, label = node.state, node.label
                    snap = state.snapshot(node.breaker, now)
                    for s in BREAKER_STATES:
                        breaker.add_metric([label, s], 1.0 if snap["breaker"] == s else 0.0)
                    for to, count in state.transitions.items():
                        transitions.add_metric([label, to], count)
                    target_requests.add_metric([label], state.requests)
                    errors.add_metric([label], state.errors)
                    in_flight.add_metric([label], state.in_flight)
                    if state.ewma_ms is not None:
                        ewma.add_metric([label], state.ewma_ms / 1000)
                elif isinstance(node, CanaryNode):
                    canary_share.add_metric([name, node.path], node.share)
                    for arm, stats in node.state.arms.items():
                        arm_requests.add_metric([name, node.path, arm], stats.requests)
                        arm_errors.add_metric([name, node.path, arm], stats.errors)
        yield from (breaker, transitions, target_requests, errors, in_flight, ewma, canary_share,
                    arm_requests, arm_errors)


class WorkerLabel:
    """This worker's families, each sample labelled `worker="INDEX"` under `--workers N`."""

    def __init__(self, collector: GatewayCollector, worker: str | None):
        self.collector, self.worker = collector, worker

    def collect(self):
        for family in self.collector.collect():
            if self.worker is not None:
                family.samples = [s._replace(labels={**s.labels, "worker": self.worker})
                                  for s in family.samples]
            yield family


def metrics_endpoint(reloader: Reloader, alerts: AlertDispatcher | None = None):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(STATS)
    registry.register(WorkerLabel(GatewayCollector(reloader, alerts),
                                  os.environ.get("GATEWAY_WORKER_INDEX")))

    async def metrics(request: Request) -> Response:
        if not reloader.holder.current.metrics_enabled:
            return Response("metrics are off (observability.metrics: false)\n", status_code=404,
                            media_type="text/plain")
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    return metrics
