"""Built-in plugin: OpenTelemetry traces (`observability.traces`, the optional `otel` extra).

From each sampled request's RequestRecord, once the request is over: a SERVER span for the
request (child of the client's span when it sent a W3C traceparent) and a CLIENT span per
upstream call, with the span ids the calls already carried upstream in their traceparent
(graph/nodes.py), so the upstream's own spans hang under them. The spans are handed to the
SDK's BatchSpanProcessor: exporting (OTLP/HTTP, protobuf) happens on its thread, never on the
request path. The exporter is kept across reloads while its settings stay the same.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Mapping

from .. import hookimpl
from ..hookspecs import PluginContext
from ..logs import get_logger
from ..request_record import RequestRecord

log = get_logger("gateway.traces")
DEFAULT_SERVICE = "bodhi-gateway"


class _PresetIds:
    """An OpenTelemetry IdGenerator handing out the ids the gateway chose (the span ids sent
    upstream), set just before each span starts; the SDK calls it under our lock."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_id

    def is_trace_id_random(self) -> bool:
        return True  # os.urandom, as the W3C random-trace-id flag means


class Exporter:
    """One TracerProvider with its OTLP/HTTP exporter, per distinct traces config."""

    def __init__(self, endpoint: str, service: str, headers: Mapping[str, str]):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        self.ids = _PresetIds()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}),
                                       sampler=ALWAYS_ON, id_generator=self.ids)  # type: ignore[arg-type]
        self.provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint, headers=dict(headers), timeout=10)))
        self.tracer = self.provider.get_tracer("gateway")
        self.lock = threading.Lock()

    async def aclose(self) -> None:
        """Flush what is queued and stop (at shutdown, or when a reload drops this config)."""
        await asyncio.to_thread(self.provider.shutdown)


class RecordSpans:
    """request_finished: the record's spans, built with their real start and end times."""

    wants_bodies = False

    def __init__(self, exporter: Exporter):
        self.exporter = exporter
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._trace, self._kind, self._status, self._code = trace, SpanKind, Status, StatusCode

    def __call__(self, record: RequestRecord) -> None:
        if not record.sampled:
            return
        trace, exporter = self._trace, self.exporter
        start = int(record.time * 1e9)
        parent = None
        if record.parent_span_id:
            parent = trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(
                int(record.trace_id, 16), int(record.parent_span_id, 16), is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))))
        with exporter.lock:
            exporter.ids.trace_id = int(record.trace_id, 16)
            exporter.ids.span_id = int.from_bytes(os.urandom(8), "big")
            span = exporter.tracer.start_span(
                f"{record.endpoint} {record.route}".strip(), context=parent,
                kind=self._kind.SERVER, start_time=start, attributes=_request_attributes(record))
            inside = trace.set_span_in_context(span)
            for attempt in record.attempts:
                if attempt.span_id is None or attempt.offset_ms is None:
                    continue
                exporter.ids.span_id = int(attempt.span_id, 16)
                began = start + int(attempt.offset_ms * 1e6)
                child = exporter.tracer.start_span(
                    f"upstream {attempt.target}", context=inside, kind=self._kind.CLIENT,
                    start_time=began, attributes={
                        "gateway.target": attempt.target,
                        "http.response.status_code": attempt.status,
                        **({"error.type": attempt.error_class} if attempt.error_class else {}),
                    })
                if attempt.error_class:
                    child.set_status(self._status(self._code.ERROR, attempt.error_class))
                child.end(end_time=began + int(attempt.latency_ms * 1e6))
            if record.status >= 500 or record.error and record.status >= 400:
                span.set_status(self._status(self._code.ERROR, record.error or str(record.status)))
            span.end(end_time=start + int(record.latency_ms * 1e6))


def _request_attributes(record: RequestRecord) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gateway.request_id": record.request_id,
        "gateway.endpoint": record.endpoint,
        "gateway.route": record.route,
        "gateway.config_version": record.config_version,
        "gateway.stream": record.stream,
        "gateway.attempts": len(record.attempts),
        "http.response.status_code": record.status,
    }
    optional = {"gateway.key": record.key, "gateway.target": record.target,
                "gateway.cache": record.cache, "gateway.outcome": record.outcome,
                "gen_ai.usage.input_tokens": record.tokens_in,
                "gen_ai.usage.output_tokens": record.tokens_out,
                "gateway.cost_usd": record.cost_usd, "gateway.ttfb_ms": record.ttfb_ms}
    attributes.update({k: v for k, v in optional.items() if v is not None})
    return attributes


@hookimpl
def request_finished(config: dict, context: PluginContext) -> RecordSpans | None:
    traces = (context.gateway_config.get("observability") or {}).get("traces")
    if not traces:
        return None
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:  # the compiler reports it at observability.traces
        return None
    endpoint = traces["endpoint"]
    service = traces.get("service_name", DEFAULT_SERVICE)
    headers = dict(traces.get("headers") or {})
    exporter = context.state.acquire(
        ("traces", endpoint, service, tuple(sorted(headers.items()))),
        lambda: Exporter(endpoint, service, headers))
    return RecordSpans(exporter)
