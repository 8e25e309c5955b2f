"""One structured log event per request: route, target, status, attempts, latency."""

from __future__ import annotations

import time

from ..graph.context import RequestContext
from ..logs import get_logger, info_line

log = get_logger("gateway.request")


def log_request(ctx: RequestContext | None, endpoint: str, request_id: str, status: int,
                target: str | None, error: str | None = None, outcome: str | None = None) -> None:
    """``ctx`` is None when the request failed before a route was chosen (bad JSON, 404).
    ``outcome`` says how a stream ended when it did not end normally: "interrupted" (the
    upstream or a plugin failed after the first byte) or "client_disconnected"."""
    if ctx is None:
        fields = {"request_id": request_id, "endpoint": endpoint, "status": status, "error": error}
        if outcome:
            fields["outcome"] = outcome
        info_line(log, "request", fields)
        return
    fields = {
        "request_id": request_id,
        "endpoint": endpoint,
        "route": ctx.route,
        "target": target,
        "status": status,
        "attempts": len(ctx.attempts),
        "stream": ctx.stream,
        "key": ctx.key_name,
        "latency_ms": round((time.monotonic() - ctx.started) * 1000, 2),
        "error": error,
    }
    if outcome:
        fields["outcome"] = outcome
    if ctx.stream_recoveries:
        fields["stream_recovered"] = ctx.stream_recoveries + 1
    info_line(log, "request", fields)
