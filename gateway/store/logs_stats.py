"""GET /admin/stats from ``logs.db``: requests, errors, latency percentiles, tokens, cost and
cache hits over a window, in time buckets and per route, target, key or model.

Sums are counted by SQLite (one GROUP BY bucket and group); percentiles come from the
window's latencies, read once in order, nearest rank: the lines of provider-native batches
(``native_batch``, latency 0: the gateway did not send them) count as requests but have no
latency to add. Errors are requests whose answer had a
status of 400 or more; the cache hit rate is hits among the requests the cache looked up
(hits and misses).
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

from .logs_db import TABLE

GROUPS = {
    "route": "route",
    "target": "target",
    "key": "key",
    # the model that answered: the target's part after its provider
    "model": "CASE WHEN instr(target, '/') > 0 THEN substr(target, instr(target, '/') + 1) "
             "ELSE target END",
}
NO_NAME = "(none)"  # the group of requests without one (no key, no target reached)
_SUMS = ("requests", "errors", "tokens_in", "tokens_out", "cost_usd", "cache_hits",
         "cache_lookups")


def window_bounds(now: float, window_s: float, buckets: int) -> tuple[float, float, float]:
    """(since, until, bucket_s): buckets end on a multiple of their width, so a chart polled
    again shows the same buckets."""
    bucket_s = window_s / buckets
    until = math.ceil(now / bucket_s) * bucket_s
    return until - window_s, until, bucket_s


def stats(conn: sqlite3.Connection, *, now: float, window_s: float, buckets: int,
          group_by: str | None) -> dict[str, Any]:
    """The contract's answer (docs/observability.md "Stats API")."""
    since, until, bucket_s = window_bounds(now, window_s, buckets)
    group = GROUPS[group_by] if group_by else "NULL"
    bucket = f"CAST((time - {since!r}) / {bucket_s!r} AS INTEGER)"
    where = f"FROM {TABLE} WHERE time >= ? AND time < ?"
    sums: dict[str, list[float]] = {}  # group name -> sums
    series: list[list[float]] = [[0.0] * len(_SUMS) for _ in range(buckets)]
    total = [0.0] * len(_SUMS)
    for b, name, *values in conn.execute(
            f"SELECT {bucket} AS b, {group} AS g, COUNT(*), SUM(status >= 400), "
            "TOTAL(tokens_in), TOTAL(tokens_out), TOTAL(cost_usd), SUM(cache = 'hit'), "
            f"SUM(cache IN ('hit', 'miss')) {where} GROUP BY b, g", (since, until)):
        mine = sums.setdefault(name or NO_NAME, [0.0] * len(_SUMS)) if group_by else None
        for i, value in enumerate(values):
            value = value or 0
            total[i] += value
            if 0 <= b < buckets:
                series[b][i] += value
            if mine is not None:
                mine[i] += value
    latencies: list[float] = []
    by_bucket: list[list[float]] = [[] for _ in range(buckets)]
    by_group: dict[str, list[float]] = {}
    for b, name, latency in conn.execute(
            f"SELECT {bucket}, {group}, latency_ms {where} AND native_batch IS NULL "
            "ORDER BY latency_ms", (since, until)):
        latencies.append(latency)
        if 0 <= b < buckets:
            by_bucket[b].append(latency)
        if group_by:
            by_group.setdefault(name or NO_NAME, []).append(latency)
    groups = [{"name": name, **_stats(values, by_group.get(name, []))}
              for name, values in sums.items()]
    groups.sort(key=lambda g: (-g["requests"], g["name"]))
    return {
        "window_s": _number(window_s), "bucket_s": _number(bucket_s), "since": since,
        "until": until, "group_by": group_by,
        "totals": _stats(total, latencies),
        "groups": groups,
        "series": [{"t": since + i * bucket_s, **_stats(series[i], by_bucket[i])}
                   for i in range(buckets)],
    }


def _stats(sums: list[float], latencies: list[float]) -> dict[str, Any]:
    requests, errors, tokens_in, tokens_out, cost, hits, lookups = sums
    return {
        "requests": int(requests), "errors": int(errors),
        "error_rate": errors / requests if requests else 0.0,
        "p50_ms": percentile(latencies, 0.50), "p95_ms": percentile(latencies, 0.95),
        "tokens_in": int(tokens_in), "tokens_out": int(tokens_out),
        "cost_usd": round(cost, 9), "cache_hits": int(hits),
        "cache_hit_rate": hits / lookups if lookups else 0.0,
    }


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest rank of sorted values; None when there are none."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def _number(value: float) -> float | int:
    return int(value) if value == int(value) else value
