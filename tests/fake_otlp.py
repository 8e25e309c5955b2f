"""A fake OpenTelemetry collector on a loopback port: OTLP/HTTP at /v1/traces, protobuf bodies
(what opentelemetry-exporter-otlp-proto-http sends) decoded with opentelemetry-proto, every
span kept as a plain dict."""

from __future__ import annotations

import gzip
import threading
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse,
)

from .background_app import BackgroundApp


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class FakeCollector(BackgroundApp):
    def __init__(self) -> None:
        super().__init__()
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/traces"
        self.spans: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.arrived = threading.Condition()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self._traces)

    async def _traces(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        message = ExportTraceServiceRequest()
        message.ParseFromString(raw)
        spans = []
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append({
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "kind": span.kind,
                        "start": span.start_time_unix_nano / 1e9,
                        "end": span.end_time_unix_nano / 1e9,
                        "status": span.status.code,
                        "attributes": {a.key: _value(a.value) for a in span.attributes},
                        "resource": resource,
                    })
        with self.arrived:
            self.headers.append(dict(request.headers))
            self.spans.extend(spans)
            self.arrived.notify_all()
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """At least ``count`` spans, waiting at most ``timeout`` seconds for them."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.spans) >= count, timeout)
            assert len(self.spans) >= count, f"{len(self.spans)} spans of {count}: {self.spans}"
            return list(self.spans)
