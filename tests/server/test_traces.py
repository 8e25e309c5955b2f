"""OpenTelemetry traces: a SERVER span per request and a CLIENT span per upstream call, exported
over OTLP/HTTP (protobuf) to a fake collector on loopback; the client's traceparent is the
request span's parent and every upstream call carries its own span's traceparent."""

from __future__ import annotations

import sys

import pytest

from gateway.config.compiler import Runtime, compile_bytes
from gateway.errors import ConfigErrors

from ..fake_otlp import FakeCollector

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  up: {{type: openai-compatible, base_url: "{url}"}}
routes:
  smart:
    fallback:
      targets:
        - target: {{provider: up, model: bad}}
        - target: {{provider: up, model: good}}
observability:
{traces}
"""
TRACES = """  traces: {{exporter: otlp, endpoint: "{endpoint}", sample_ratio: {ratio}, service_name: gw-test,
           headers: {{x-collector-key: k1}}}}"""
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
HELLO = [{"role": "user", "content": "hello"}]
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50"}  # the batch processor's delay, in ms


@pytest.fixture
def collector():
    fake = FakeCollector().start()
    yield fake
    fake.stop()


def start(gateway_app, upstream, collector, ratio=1.0):
    traces = TRACES.format(endpoint=collector.endpoint, ratio=ratio) if collector else "  metrics: true"
    return gateway_app(CONFIG.format(url=upstream.base_url, traces=traces), env=FAST_EXPORT)


def traceparents(upstream) -> list[str]:
    return [r.headers.get("traceparent") or r.headers.get("Traceparent") for r in upstream.requests]


def test_request_and_attempt_spans_follow_the_client_trace(gateway_app, upstream, collector):
    """The client's traceparent makes the request span's parent; the failed and the answering
    upstream calls are its children, with the span ids their traceparent carried upstream,
    their statuses and times inside the request's."""
    gw = start(gateway_app, upstream, collector)
    upstream.script("bad", 500)
    with gw.openai() as client:
        client.chat.completions.create(
            model="smart", messages=HELLO,
            extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    sent = traceparents(upstream)
    assert len(sent) == 2 and all(s.startswith(f"00-{CLIENT_TRACE}-") and s.endswith("-01")
                                  for s in sent)
    spans = collector.wait_for(3)
    assert len(spans) == 3
    request = next(s for s in spans if s["parent_span_id"] == CLIENT_SPAN)
    assert request["trace_id"] == CLIENT_TRACE and request["name"] == "chat smart"
    assert request["kind"] == 2  # SERVER
    assert request["attributes"]["gateway.route"] == "smart"
    assert request["attributes"]["gateway.target"] == "up/good"
    assert request["attributes"]["http.response.status_code"] == 200
    assert request["attributes"]["gateway.attempts"] == 2
    assert request["resource"]["service.name"] == "gw-test"
    calls = sorted((s for s in spans if s is not request), key=lambda s: s["start"])
    assert [c["attributes"]["gateway.target"] for c in calls] == ["up/bad", "up/good"]
    assert [c["attributes"]["http.response.status_code"] for c in calls] == [500, 200]
    assert [c["status"] for c in calls] == [2, 0]  # ERROR, UNSET
    assert all(c["parent_span_id"] == request["span_id"] and c["kind"] == 3 for c in calls)
    assert [c["span_id"] for c in calls] == [s.split("-")[2] for s in sent]
    assert all(request["start"] <= c["start"] <= c["end"] <= request["end"] + 1e-3 for c in calls)
    assert collector.headers[0]["x-collector-key"] == "k1"
    assert collector.headers[0]["Content-Type"] == "application/x-protobuf"


def test_new_trace_without_client_traceparent(gateway_app, upstream, collector):
    """Without a client traceparent the request starts a trace of its own: a root span, and
    the upstream call carries that trace."""
    gw = start(gateway_app, upstream, collector)
    with gw.openai() as client:
        client.chat.completions.create(model="smart", messages=HELLO)
    spans = collector.wait_for(2)
    request = next(s for s in spans if s["kind"] == 2)
    assert request["parent_span_id"] == ""
    (call,) = [s for s in spans if s["kind"] == 3]
    assert traceparents(upstream) == [f"00-{request['trace_id']}-{call['span_id']}-01"]


def test_unsampled_requests_export_nothing_but_still_propagate(gateway_app, upstream, collector):
    """sample_ratio 0: no span leaves, upstream calls still carry the trace (flags 00); a
    client's sampled flag wins over the ratio."""
    gw = start(gateway_app, upstream, collector, ratio=0)
    with gw.openai() as client:
        client.chat.completions.create(model="smart", messages=HELLO)
        assert traceparents(upstream)[-1].endswith("-00")
        client.chat.completions.create(
            model="smart", messages=HELLO,
            extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    spans = collector.wait_for(2)
    assert {s["trace_id"] for s in spans} == {CLIENT_TRACE}


def test_traces_off_sends_no_traceparent(gateway_app, upstream):
    """Without observability.traces, nothing is sent upstream but what the client's request
    needs: no traceparent, even when the client sent one."""
    gw = start(gateway_app, upstream, None)
    gw.post("/v1/chat/completions", json={"model": "smart", "messages": HELLO},
            headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert traceparents(upstream) == [None]


def test_traces_without_the_otel_extra_is_a_config_error(tmp_path, monkeypatch):
    """Configured without the otel extra installed: rejected at observability.traces, saying
    what to install."""
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http", None)
    text = CONFIG.format(url="http://127.0.0.1:9/v1", traces=TRACES.format(
        endpoint="http://127.0.0.1:9/v1/traces", ratio=1))
    with pytest.raises(ConfigErrors) as caught:
        compile_bytes(text.encode(), str(tmp_path / "gateway.yaml"), version=1, runtime=Runtime())
    (error,) = caught.value.errors
    assert error.path == "$.observability.traces" and error.line == 14, error
    assert "pip install 'bodhi-gateway[otel]'" in str(error)
