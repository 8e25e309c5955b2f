"""The end of a request: the structured `request` log event and the RequestRecord handed to
the plugins' `request_finished` functions (hookspecs.RequestFinished), built once per request,
only when someone reads it."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping

from ..graph.context import RequestContext
from ..graph.graph import RoutingGraph
from ..logs import get_logger
from ..request_record import AttemptRecord, RequestRecord
from .access_log import log_request

log = get_logger("gateway.plugins")

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_NO_TRACE = "0" * 32
_NO_SPAN = "0" * 16


def trace_context(headers: Mapping[str, str], sample_ratio: float | None) -> dict[str, Any]:
    """The RequestContext's trace fields: the trace id of the client's W3C `traceparent`
    header, else a new random one; with traces on (``sample_ratio`` not None) also the
    client's span id and whether to export the request's spans: the client's sampled flag
    when it sent one, else the trace id's low 64 bits under ``sample_ratio`` of their range
    (OpenTelemetry's TraceIdRatioBased)."""
    given = headers.get("traceparent")
    match = _TRACEPARENT.match(given.strip().lower()) if given else None
    if match and match.group(1) != _NO_TRACE and match.group(2) != _NO_SPAN:
        trace_id, parent, sampled = match.group(1), match.group(2), int(match.group(3), 16) & 1 == 1
    else:
        trace_id, parent = os.urandom(16).hex(), None
        sampled = sample_ratio is not None and int(trace_id[16:], 16) < sample_ratio * 2**64
    if sample_ratio is None:
        return {"trace_id": trace_id}
    return {"trace_id": trace_id, "trace_parent": parent, "trace_sampled": sampled}


@dataclass(slots=True)
class Ending:
    """How a request ended, as the server saw it; ``finish`` turns it into the log event and
    the record."""

    endpoint: str
    request_id: str
    status: int
    started: float  # time.monotonic() at arrival
    route: str = ""
    key: str | None = None  # when no RequestContext was built (ctx is None)
    target: str | None = None
    error: str | None = None
    outcome: str | None = None
    cache: str | None = None
    overhead_ms: float = 0.0
    first_byte: float | None = None  # time.monotonic() of the answer's first body byte
    response_body: bytes | None = None


def finish(graph: RoutingGraph, ctx: RequestContext | None, end: Ending) -> None:
    """Log the request (observability.request_log) and hand its record to the plugins."""
    if graph.log_requests:
        log_request(ctx, end.endpoint, end.request_id, end.status, end.target, end.error,
                    end.outcome)
    if not graph.request_finished:
        return
    record = build_record(graph, ctx, end)
    for plugin, function in graph.request_finished:
        try:
            function(record)
        except Exception as exc:  # a plugin's failure must never reach the client
            log.error("plugin_failed", plugin=plugin, hook="request_finished", exc_info=exc)


def build_record(graph: RoutingGraph, ctx: RequestContext | None, end: Ending) -> RequestRecord:
    now = time.monotonic()
    latency_ms = (now - end.started) * 1000
    usage = ctx.usage if ctx is not None else None
    bodies = graph.record_bodies
    request_body: Any = ctx.body if bodies and ctx is not None else None
    return RequestRecord(
        request_id=end.request_id,
        trace_id=ctx.trace_id if ctx is not None else "",
        time=time.time() - latency_ms / 1000,
        endpoint=end.endpoint,
        route=ctx.route if ctx is not None else end.route,
        key=_key_name(ctx) if ctx is not None else end.key,
        target="cache" if end.cache == "hit" else end.target,  # as documented: no upstream answered
        attempts=tuple(AttemptRecord(
            a.target, a.status, round(a.latency_ms, 3), a.error_class,
            round((a.started - end.started) * 1000, 3) if a.started is not None else None,
            a.span_id) for a in ctx.attempts) if ctx is not None else (),
        cache=end.cache,
        stream=ctx.stream if ctx is not None else False,
        status=end.status,
        error=end.error,
        outcome=end.outcome,
        tokens_in=usage.tokens_in if usage is not None else None,
        tokens_out=usage.tokens_out if usage is not None else None,
        cost_usd=usage.cost_usd if usage is not None else None,
        usage_estimated=usage.estimated if usage is not None else False,
        latency_ms=round(latency_ms, 3),
        ttfb_ms=(round((end.first_byte - end.started) * 1000, 3)
                 if end.first_byte is not None else None),
        overhead_ms=round(end.overhead_ms, 3),
        config_version=graph.version,
        request_body=request_body,
        response_body=end.response_body if bodies else None,
        parent_span_id=ctx.trace_parent if ctx is not None else None,
        sampled=bool(ctx.trace_sampled) if ctx is not None else False,
    )


def _key_name(ctx: RequestContext) -> str | None:
    """The caller's key: named by authentication, or known before a refusal (403)."""
    if ctx.key_name is not None:
        return ctx.key_name
    return ctx.key.name if ctx.key is not None else None
