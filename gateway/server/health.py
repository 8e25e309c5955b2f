"""GET /admin/health: per route and target, breaker state, in-flight count, EWMA latency,
error rate; per canary, its share and per-arm counters; per provider, health-check results."""

from __future__ import annotations

import time

from ..graph.graph import RoutingGraph
from ..graph.nodes import CanaryNode, TargetNode
from ..state.target import ProviderHealth
from ..types import walk
from ..units import iso_utc


def health_report(graph: RoutingGraph) -> dict:
    now = time.monotonic()
    routes = {}
    for name, route in graph.routes.items():
        targets, canaries, seen = [], [], set()
        for node in walk(route.node):
            if isinstance(node, TargetNode) and node.label not in seen:
                seen.add(node.label)
                targets.append({"target": node.label, "path": node.path,
                                **node.state.snapshot(node.breaker, now, route=name)})
            elif isinstance(node, CanaryNode):
                canaries.append({
                    "path": node.path,
                    "percent": node.percent,
                    "share": node.share,
                    "rolled_back": node.state.rolled_back,
                    "arms": {arm: stats.snapshot() for arm, stats in node.state.arms.items()},
                })
        entry: dict = {"targets": targets}
        if canaries:
            entry["canaries"] = canaries
        if route.retry_budget is not None:
            entry["retry_budget"] = {"ratio": route.retry_budget.ratio,
                                     "denied": route.retry_budget.state.denied}
        routes[name] = entry
    providers = {}
    for name in graph.providers:
        health = _provider_health(graph, name)
        if health is not None:
            providers[name] = {"healthy": health.healthy, "error": health.error,
                               "consecutive_failures": health.consecutive_failures,
                               "checked_at": None if health.checked_at is None
                               else iso_utc(health.checked_at)}
    return {"config_version": graph.version, "routes": routes, "providers": providers}


def _provider_health(graph: RoutingGraph, provider: str) -> ProviderHealth | None:
    for route in graph.routes.values():
        for node in walk(route.node):
            if isinstance(node, TargetNode) and node.provider.name == provider:
                return node.health
    return None
