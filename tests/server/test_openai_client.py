"""The gateway driven by the official openai client, with a fake OpenAI upstream speaking real
HTTP: in process, and once end to end against the real server on a loopback port."""

from __future__ import annotations

import asyncio

import openai
import pytest

from ..fake_upstream import Behaviour

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}", api_key: upstream-secret}}
  demo: {{type: mock}}
routes:
  gpt: {{target: {{provider: up, model: real-model}}}}
  smart:
    fallback:
      targets:
        - target: {{provider: up, model: first}}
        - target: {{provider: up, model: second}}
  embed: {{target: {{provider: up, model: embed-model}}}}
  offline: {{target: {{provider: demo, model: mock-1}}}}
"""


@pytest.fixture
def gw(upstream, gateway_app):
    return gateway_app(CONFIG.format(base_url=upstream.base_url))


def client(gw) -> openai.OpenAI:
    return gw.openai()


def test_sync_chat_completion(gw, upstream):
    """A chat completion goes to the route's target with the target's model name."""
    reply = client(gw).chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "hello"}]
    )
    assert reply.choices[0].message.content == "fake answer from real-model"
    assert reply.usage.total_tokens == 7
    sent = upstream.requests[-1]
    assert sent.body["model"] == "real-model"
    assert sent.body["messages"] == [{"role": "user", "content": "hello"}]
    assert sent.headers["Authorization"] == "Bearer upstream-secret"


def test_response_headers(gw):
    """Every proxied response carries the gateway's headers."""
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt", messages=[{"role": "user", "content": "hi"}]
    )
    h = raw.headers
    assert h["x-gateway-route"] == "gpt"
    assert h["x-gateway-target"] == "up/real-model"
    assert h["x-gateway-attempts"] == "1"
    assert "x-gateway-cache" not in h  # not advertised while there is no cache
    assert h["x-gateway-config-version"] == "1"
    assert len(h["x-request-id"]) >= 16


def test_streaming_chunks(gw):
    """Streaming is passed through; the client reassembles the text."""
    stream = client(gw).chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(parts) == "fake answer from real-model"
    assert len(parts) >= 4


async def test_async_client_and_stream(upstream, gateway_factory):
    """The async client works, for whole answers and streams, concurrently, against the real
    server on a socket."""
    gw = gateway_factory(CONFIG.format(base_url=upstream.base_url))
    aclient = openai.AsyncOpenAI(base_url=gw.base_url + "/v1", api_key="x", max_retries=0)

    async def one(i: int) -> str:
        r = await aclient.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": f"n{i}"}])
        return r.choices[0].message.content

    async def streamed() -> str:
        s = await aclient.chat.completions.create(
            model="offline", messages=[{"role": "user", "content": "stream me"}], stream=True,
            stream_options={"include_usage": True})
        text, usage = "", None
        async for chunk in s:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage
        assert usage is not None and usage.completion_tokens == len(text.split())
        return text

    results = await asyncio.gather(*(one(i) for i in range(10)), streamed())
    assert results[:10] == ["fake answer from real-model"] * 10
    assert results[10] == "Mock reply from mock-1: stream me"
    await aclient.close()


def test_embeddings(gw, upstream):
    """Embeddings route to the target and come back in OpenAI's shape."""
    result = client(gw).embeddings.create(model="embed", input=["a", "b"])
    assert [d.embedding for d in result.data] == [[0.1, 0.2, 0.3]] * 2
    assert upstream.requests[-1].path == "/v1/embeddings"
    assert upstream.requests[-1].body["model"] == "embed-model"


def test_models_lists_routes(gw):
    """GET /v1/models lists the routes, the public model names."""
    ids = sorted(m.id for m in client(gw).models.list())
    assert ids == ["embed", "gpt", "offline", "smart"]


def test_fallback_moves_on(gw, upstream):
    """A 503 from the first target falls back to the second."""
    upstream.script("first", 503)
    raw = client(gw).chat.completions.with_raw_response.create(
        model="smart", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content == "fake answer from second"
    assert raw.headers["x-gateway-target"] == "up/second"
    assert raw.headers["x-gateway-attempts"] == "2"
    assert upstream.models_seen()[-2:] == ["first", "second"]


def test_all_failed_lists_attempts(gw, upstream):
    """When every target fails, the last status comes back with the attempts listed."""
    upstream.script("first", 503)
    upstream.script("second", 502)
    with pytest.raises(openai.APIStatusError) as info:
        client(gw).chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    message = info.value.body["message"]
    assert "up/first 503" in message and "up/second 502" in message


def test_upstream_400_is_returned_as_is(gw, upstream):
    """A client error from upstream is not fallen back on, and its body is kept."""
    upstream.script("first", 400)
    with pytest.raises(openai.BadRequestError) as info:
        client(gw).chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["message"] == "fake upstream error 400"
    assert upstream.models_seen() == ["first"]


def test_unknown_model_is_404(gw):
    """An unknown model is 404 model_not_found, with a suggestion."""
    with pytest.raises(openai.NotFoundError) as info:
        client(gw).chat.completions.create(model="gtp", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_found"
    assert "did you mean 'gpt'" in info.value.body["message"]


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b'{"messages": []}', 400, "missing_required_parameter"),
        (b'{"model": "gpt"}', 400, "missing_required_parameter"),
        (b'{"model": "gpt", "messages": [], "stream": "yes"}', 400, "invalid_type"),
    ],
)
def test_bad_requests_are_400(gw, body, status, code):
    """Malformed bodies get 400 in OpenAI's error shape."""
    r = gw.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert r.json()["error"]["code"] == code


def test_body_over_max_body_is_413(upstream, gateway_app):
    """A body larger than server.max_body is refused with 413 before it is read whole."""
    config = CONFIG.format(base_url=upstream.base_url).replace(
        "version: 1\n", "version: 1\nserver: {max_body: 1KB}\n", 1)
    gw = gateway_app(config)
    big = {"model": "gpt", "messages": [{"role": "user", "content": "x" * 2000}]}
    r = gw.post("/v1/chat/completions", json=big)
    assert r.status_code == 413
    assert "server.max_body" in r.json()["error"]["message"]


def test_metadata_header_must_be_an_object(gw):
    """x-gateway-metadata that is not a JSON object is a 400."""
    r = gw.post("/v1/chat/completions", json={"model": "gpt", "messages": []},
                headers={"x-gateway-metadata": "[1]"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_metadata"


def test_unknown_path_is_openai_shaped_404(gw):
    """Paths the gateway does not serve answer in OpenAI's error shape too."""
    r = gw.get("/v1/nothing")
    assert r.status_code == 404
    assert "error" in r.json()


def test_health_endpoints(gw):
    """/healthz and /readyz answer 200 once a config is loaded."""
    assert gw.get("/healthz").json() == {"status": "ok"}
    ready = gw.get("/readyz")
    assert ready.status_code == 200 and ready.json()["config_version"] == 1


def test_mid_stream_failure_ends_with_sse_error(gw, upstream):
    """A connection lost after the first byte ends the stream with an SSE error event."""
    upstream.script("real-model", Behaviour(fail_after_chunks=2))
    with pytest.raises(openai.APIError) as info:
        stream = client(gw).chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True)
        for _ in stream:
            pass
    assert "stream interrupted" in str(info.value)


def test_one_log_event_per_request_without_secrets(gw, upstream):
    """Each request, failed ones included, is one structured event; no secret is logged."""
    import json

    client(gw).chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    gw.post("/v1/chat/completions", json={"model": "nope", "messages": []})
    stream = client(gw).chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "x"}], stream=True)
    list(stream)
    events = [json.loads(line) for line in gw.log().splitlines() if line.startswith("{")]
    requests = [e for e in events if e["event"] == "request"]
    assert [(e["status"], e.get("route"), e.get("target")) for e in requests] == [
        (200, "gpt", "up/real-model"), (404, None, None), (200, "gpt", "up/real-model")]
    assert requests[2]["stream"] is True and requests[0]["attempts"] == 1
    assert all(e["latency_ms"] >= 0 for e in (requests[0], requests[2]))
    assert "upstream-secret" not in gw.log()


def test_overhead_header_and_metrics(gw):
    """Every answer says how long the gateway itself took; /metrics counts requests and
    keeps the overhead histogram."""
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt", messages=[{"role": "user", "content": "x"}])
    overhead = float(raw.headers["x-gateway-overhead-ms"])
    assert 0 <= overhead < 1000
    missing = gw.post("/v1/chat/completions", json={"model": "nope", "messages": []})
    assert float(missing.headers["x-gateway-overhead-ms"]) >= 0
    text = gw.get("/metrics").text
    assert 'gateway_requests_total{key="",route="gpt",status="200",target="up/real-model"} 1.0' in text
    assert 'gateway_requests_total{key="",route="",status="404",target=""} 1.0' in text
    assert 'gateway_overhead_seconds_count 2.0' in text
