"""Retry, timeout, conditional routing and key checks through the app (in process)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from ..fake_upstream import Behaviour

BASE = """
version: 1
providers:
  up: {{type: openai-compatible, base_url: "{base_url}"}}
routes:
{routes}
"""


def post(gw, model: str, headers: dict | None = None, stream: bool = False) -> httpx.Response:
    return gw.post("/v1/chat/completions", headers=headers or {},
                   json={"model": model, "stream": stream,
                         "messages": [{"role": "user", "content": "hi"}]})


def start(gateway_app, upstream, routes: str, extra: str = ""):
    return gateway_app(BASE.format(base_url=upstream.base_url, routes=routes) + extra)


def test_retry_honours_retry_after(gateway_app, upstream):
    """A 429 with Retry-After is retried after the time the upstream asked for."""
    gw = start(gateway_app, upstream, """
  r: {target: {provider: up, model: m, retry: {attempts: 2, base: 10ms, max: 2s}}}""")
    upstream.script("m", Behaviour(status=429, headers={"Retry-After": "1"}))
    r = post(gw, "r")
    assert r.status_code == 200
    assert r.headers["x-gateway-attempts"] == "2"
    first, second = upstream.requests[-2:]
    assert second.at - first.at >= 0.95


def test_retry_after_ms_is_preferred(gateway_app, upstream):
    """retry-after-ms gives a finer wait than Retry-After and is used when present."""
    gw = start(gateway_app, upstream, """
  r: {target: {provider: up, model: m, retry: {attempts: 2, base: 10ms, max: 2s}}}""")
    upstream.script("m", Behaviour(status=503, headers={"retry-after-ms": "300", "Retry-After": "5"}))
    began = time.monotonic()
    r = post(gw, "r")
    assert r.status_code == 200
    assert 0.3 <= time.monotonic() - began < 2.0


def test_retry_after_longer_than_max_falls_back_at_once(gateway_app, upstream):
    """When the upstream asks for a longer wait than retry.max, the fallback takes over."""
    gw = start(gateway_app, upstream, """
  r:
    fallback:
      targets:
        - target: {provider: up, model: a, retry: {attempts: 3, max: 1s}}
        - target: {provider: up, model: b}""")
    upstream.script("a", Behaviour(status=429, headers={"Retry-After": "30"}))
    began = time.monotonic()
    r = post(gw, "r")
    assert r.status_code == 200 and r.headers["x-gateway-target"] == "up/b"
    assert time.monotonic() - began < 1.0
    assert upstream.models_seen() == ["a", "b"]


def test_every_attempt_timed_out_is_408(gateway_app, upstream):
    """When every attempt times out the client gets 408, listing the attempts."""
    gw = start(gateway_app, upstream, """
  slow:
    fallback:
      targets:
        - target: {provider: up, model: a, timeout: 200ms, retry: {attempts: 2, base: 10ms}}
        - target: {provider: up, model: b, timeout: 200ms, retry: {attempts: 1}}""")
    upstream.script("a", Behaviour(delay=1), Behaviour(delay=1))
    upstream.script("b", Behaviour(delay=1))
    began = time.monotonic()
    r = post(gw, "slow")
    assert r.status_code == 408
    assert time.monotonic() - began < 1.5
    error = r.json()["error"]
    assert error["type"] == "timeout_error"
    assert error["message"].count("timeout") >= 3
    assert r.headers["x-gateway-attempts"] == "3"


def test_stream_first_byte_timeout_falls_back(gateway_app, upstream):
    """A stream whose first byte does not come in time falls back before anything is sent."""
    gw = start(gateway_app, upstream, """
  s:
    fallback:
      targets:
        - target: {provider: up, model: a, timeout: {first_byte: 200ms, total: 5s}, retry: {attempts: 1}}
        - target: {provider: up, model: b}""")
    upstream.script("a", Behaviour(delay=2))
    r = post(gw, "s", stream=True)
    assert r.status_code == 200
    assert r.headers["x-gateway-target"] == "up/b"
    assert sse_text(r.text) == "fake answer from b"
    assert upstream.models_seen() == ["a", "b"]


def sse_text(body: str) -> str:
    """The assistant text of an SSE chat stream."""
    text = ""
    for line in body.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    return text


def test_request_deadline_header_bounds_total_time(gateway_app, upstream):
    """x-gateway-timeout caps the whole request, retries and fallbacks included."""
    gw = start(gateway_app, upstream, """
  slow:
    fallback:
      targets:
        - target: {provider: up, model: a, timeout: 5s, retry: {attempts: 3}}
        - target: {provider: up, model: b, timeout: 5s}""")
    upstream.script("a", *[Behaviour(delay=3)] * 3)
    upstream.script("b", Behaviour(delay=3))
    began = time.monotonic()
    r = post(gw, "slow", headers={"x-gateway-timeout": "500ms"})
    assert r.status_code == 408
    assert time.monotonic() - began < 1.5


def test_conditional_routes_on_metadata_header(gateway_app, upstream):
    """x-gateway-metadata drives conditional routing; the default catches the rest."""
    gw = start(gateway_app, upstream, """
  tiered:
    conditional:
      rules:
        - when: {metadata.tier: {$eq: premium}}
          then: {target: {provider: up, model: premium}}
        - when: {params.max_tokens: {$gt: 1000}}
          then: {target: {provider: up, model: long}}
      default: {target: {provider: up, model: basic}}""")
    premium = post(gw, "tiered", headers={"x-gateway-metadata": '{"tier": "premium"}'})
    assert premium.json()["model"] == "premium"
    assert post(gw, "tiered").json()["model"] == "basic"
    long = gw.post("/v1/chat/completions", json={
        "model": "tiered", "max_tokens": 2000, "messages": [{"role": "user", "content": "x"}]})
    assert long.json()["model"] == "long"


KEYS = """
keys:
  team-a:
    key_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
    routes: [open]
    metadata: {tier: premium}
  expired:
    key_sha256: 8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92
    expires: "2020-01-01"
"""


@pytest.fixture
def keyed(gateway_app, upstream):
    return start(gateway_app, upstream, """
  open:
    conditional:
      rules:
        - when: {metadata.tier: premium}
          then: {target: {provider: up, model: premium}}
      default: {target: {provider: up, model: basic}}
  closed: {target: {provider: up, model: m}}""", KEYS)


def test_keys_401_without_or_with_unknown_key(keyed):
    """With keys configured, no key or an unknown key is 401."""
    assert post(keyed, "open").status_code == 401
    r = post(keyed, "open", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_keys_403_for_route_not_allowed(keyed):
    """A key on a route it may not use gets 403."""
    r = post(keyed, "closed", headers={"Authorization": "Bearer password"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "route_not_allowed"


def test_key_metadata_drives_routing(keyed):
    """The key's metadata is merged into the request's and used by conditions; x-api-key works."""
    r = post(keyed, "open", headers={"x-api-key": "password"})
    assert r.status_code == 200 and r.json()["model"] == "premium"


def test_expired_key_is_401(keyed):
    """A key past its expiry date is refused."""
    r = post(keyed, "closed", headers={"Authorization": "Bearer 123456"})
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


def test_models_lists_only_the_keys_routes(keyed):
    """GET /v1/models lists the routes the caller's key may use."""
    r = keyed.get("/v1/models", headers={"Authorization": "Bearer password"})
    assert [m["id"] for m in r.json()["data"]] == ["open"]
    assert keyed.get("/v1/models").status_code == 401
