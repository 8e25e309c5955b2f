"""Which counters back limits and budgets, from `server.state`: memory, sqlite (default) or
redis://. Kept in the runtime state registry, so reloads keep the counters, and a change of
backend in the config takes effect at the next reload."""

from __future__ import annotations

import os

from ..hookspecs import PluginContext
from ..state.counters import Counters, MemoryCounters
from ..state.persistent import SqliteCounters
from ..store import state_db


def worker_index() -> int:
    """This worker's number under `gateway serve --workers N` (0 to N-1); 0 for a single
    process. Work one process of a data directory must do alone runs in worker 0."""
    try:
        return int(os.environ.get("GATEWAY_WORKER_INDEX", "0") or 0)
    except ValueError:
        return 0


def workers() -> int:
    """Worker processes of this server (set by `gateway serve`): without a shared backend each
    enforces its share of every limit."""
    try:
        return max(1, int(os.environ.get("GATEWAY_WORKERS", "1")))
    except ValueError:
        return 1


def counters_for(context: PluginContext) -> Counters:
    server = context.gateway_config.get("server") or {}
    state = server.get("state", "sqlite")
    if state.startswith(("redis://", "rediss://")):
        from ..state.redis_counters import RedisCounters

        replicas = server.get("replicas", 1)
        outage = server.get("state_outage", "local")
        counters = context.state.acquire(("counters", state), lambda: RedisCounters(
            state, outage=outage, share=replicas * workers()))
        counters.configure(outage=outage, share=replicas * workers())  # a reload may change them
        return counters
    if state == "memory":
        return context.state.acquire(("counters", "memory"), lambda: MemoryCounters(workers()))
    path = state_db.path(context.data_dir)
    index = worker_index()
    return context.state.acquire(("counters", path), lambda: SqliteCounters(path, workers(), index))
