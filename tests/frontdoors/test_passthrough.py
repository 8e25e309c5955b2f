"""/v1/passthrough/{provider}/{path} through the real app: the provider's credentials injected
(never the caller's), only below its configured base_url (traversal, absolute URLs, encoded
slashes and dots, host-override headers: 400, sent over a real socket so that no client
library tidies the path first), hop-by-hop and auth headers stripped, answers streamed back
with the provider's status, keys and limits applied, usage logged."""

from __future__ import annotations

import hashlib
import http.client
import json

import pytest

from gateway.providers.passthrough import PassthroughRefused, forwarded_headers, upstream_url

from ..cli_runner import run_cli
from ..fake_upstream import Behaviour
from ..inprocess_gateway import poll
from ..providers.fake_anthropic import API_KEY, FakeAnthropic

RAW = "sk-gw-pass"
CONFIG = """
version: 1
providers:
  up: {{type: openai-compatible, base_url: "{openai}", api_key: upstream-secret, passthrough: true}}
  claude: {{type: anthropic, base_url: "{anthropic}", api_key: {key}, passthrough: true}}
  closed: {{type: openai-compatible, base_url: "{openai}", api_key: upstream-secret}}
  demo: {{type: mock}}
routes:
  gpt: {{target: {{provider: up, model: gpt-test}}}}
keys:
  ops:
    key_sha256: {digest}
    limits: {{requests_per_minute: 4}}
  narrow:
    key_sha256: {narrow}
    routes: [gpt]
"""
AUTH = {"Authorization": f"Bearer {RAW}"}


@pytest.fixture
def fake():
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture
def gw(fake, upstream, gateway_app):
    return gateway_app(CONFIG.format(
        openai=upstream.base_url, anthropic=fake.base_url, key=API_KEY,
        digest=hashlib.sha256(RAW.encode()).hexdigest(),
        narrow=hashlib.sha256(b"narrow").hexdigest()))


def test_credentials_injected_and_client_headers_cleaned(gw, upstream):
    """The provider's key replaces the caller's; hop-by-hop headers (and those Connection
    names), x-gateway-* and x-forwarded-* stay behind; the others go on."""
    answer = gw.post("/v1/passthrough/up/chat/completions", json={
        "model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}, headers={
        **AUTH, "Connection": "keep-alive, x-private", "x-private": "1", "Keep-Alive": "5",
        "x-forwarded-for": "10.0.0.1", "x-gateway-metadata": "{}", "openai-beta": "assistants=v2",
        "Cookie": "session=1"})
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "fake answer from gpt-test"
    assert answer.headers["x-gateway-target"] == "up/passthrough"
    assert answer.headers["x-gateway-route"] == "passthrough/up"
    sent = {k.lower(): v for k, v in upstream.requests[-1].headers.items()}
    assert sent["authorization"] == "Bearer upstream-secret"
    assert sent["openai-beta"] == "assistants=v2"
    for gone in ("x-private", "keep-alive", "x-forwarded-for", "x-gateway-metadata", "cookie"):
        assert gone not in sent
    assert upstream.requests[-1].path == "/v1/chat/completions"


def test_stream_relayed_and_query_forwarded(gw, upstream):
    """An SSE answer comes back as the provider sent it; a GET keeps its query string."""
    with gw.stream("POST", "/v1/passthrough/up/chat/completions", headers=AUTH, json={
            "model": "gpt-test", "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        text = "".join(answer.iter_text())
    assert text.endswith("data: [DONE]\n\n") and "fake" in text
    listed = gw.get("/v1/passthrough/up/models?limit=2", headers=AUTH)
    assert listed.status_code == 200 and listed.json() == {"object": "list", "data": []}


def test_anthropic_endpoint_with_its_own_headers(gw, fake):
    """Anthropic gets its x-api-key and anthropic-version; the caller's key never."""
    answer = gw.post("/v1/passthrough/claude/v1/messages/count_tokens", headers={
        "x-api-key": RAW}, json={"model": "claude-x", "messages": [
            {"role": "user", "content": "hi"}]})
    assert answer.status_code == 200 and answer.json() == {"input_tokens": 10}
    sent = fake.requests[-1].headers
    assert sent["x-api-key"] == API_KEY and sent["anthropic-version"]


def test_provider_errors_pass_through_scrubbed(gw, upstream):
    """The provider's status and body come back as they are, its key scrubbed."""
    upstream.script("gpt-test", Behaviour(status=404, body=json.dumps(
        {"error": {"message": "no such thing for upstream-secret"}})))
    answer = gw.post("/v1/passthrough/up/chat/completions", headers=AUTH,
                     json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]})
    assert answer.status_code == 404
    assert "upstream-secret" not in answer.text and "no such thing" in answer.text


def test_keys_and_limits_apply(gw):
    """A key must be allowed the route passthrough/<provider>; the key's rate limit counts
    passthrough requests; no key is a 401."""
    assert gw.get("/v1/passthrough/up/models").status_code == 401
    denied = gw.get("/v1/passthrough/up/models", headers={"Authorization": "Bearer narrow"})
    assert denied.status_code == 403 and "passthrough/up" in denied.json()["error"]["message"]
    statuses = [gw.get("/v1/passthrough/up/models", headers=AUTH).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    rows = poll(lambda: gw.get("/admin/usage?period=all").json()["usage"],
                lambda rows: sum(r["requests"] for r in rows) == 4, what="usage not written")
    assert {(r["route"], r["key"], r["target"]) for r in rows} == {
        ("passthrough/up", "ops", "up/passthrough")}


def test_unknown_and_unpassable_providers(gw):
    missing = gw.get("/v1/passthrough/nope/models", headers=AUTH)
    assert missing.status_code == 404 and "no provider named 'nope'" in missing.text
    for name in ("closed", "demo"):
        closed = gw.get(f"/v1/passthrough/{name}/models", headers=AUTH)
        assert closed.status_code == 403
        assert closed.json()["error"]["type"] == "permission_error"
        assert f"providers.{name}.passthrough: true" in closed.json()["error"]["message"]


@pytest.mark.parametrize("kind", ["mock", "bedrock"])
def test_passthrough_on_a_provider_that_cannot_have_it_is_a_config_error(kind, tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text("version: 1\nproviders:\n"
                    f"  p: {{type: {kind}, region: us-east-1, passthrough: true}}\n"
                    "routes:\n  r: {target: {provider: p, model: m}}\n")
    result = run_cli("validate", str(path))
    assert result.code == 1
    assert "gateway.yaml:3:" in result.err and "provider 'p' (" + kind + ") cannot be passed through" in result.err


@pytest.mark.parametrize("path", [
    "/v1/passthrough/up/../../admin/config",
    "/v1/passthrough/up/%2e%2e/%2e%2e/admin",
    "/v1/passthrough/up/chat%2Fcompletions",
    "/v1/passthrough/up/..%2F..%2Fx",
    "/v1/passthrough/up//evil.example/x",
    "/v1/passthrough/up/http://evil.example/x",
    "/v1/passthrough/up/a%5c..%5cb",
    "/v1/passthrough/up/%252e%252e/x",
    "/v1/passthrough/up/",
    "/v1/passthrough/u%70/models",
])
def test_paths_that_could_leave_the_base_url_are_refused(gw, upstream, path):
    """Over a real socket, exactly as written: 400, and nothing reaches the upstream."""
    status, body = raw_request(gw, "GET", path, AUTH)
    assert status == 400, body
    assert "passthrough refused" in json.loads(body)["error"]["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("header", ["X-Forwarded-Host", "X-Original-URL", "X-Rewrite-URL",
                                    "X-Host"])
def test_host_override_headers_are_refused(gw, upstream, header):
    status, body = raw_request(gw, "GET", "/v1/passthrough/up/models",
                               {**AUTH, header: "evil.example"})
    assert status == 400 and header.lower() in body
    assert upstream.requests == []


def raw_request(gw, method: str, path: str, headers: dict) -> tuple[int, str]:
    if gw.port is None:
        gw.listen()
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.request(method, path, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("raw", ["", "a//b", "a/./b", "%2E", "a%2fb", "a%5Cb", "a\\b", "%25",
                                 "a b", "a/%zz"])
def test_upstream_url_refusals(raw):
    with pytest.raises(PassthroughRefused):
        upstream_url("https://api.example.com/v1", raw)


def test_upstream_url_stays_below_the_base():
    assert upstream_url("https://api.example.com/v1/", "models/gemini-pro:generateContent",
                        "alt=sse") == \
        "https://api.example.com/v1/models/gemini-pro:generateContent?alt=sse"
    assert upstream_url("http://127.0.0.1:9/base", "a%20b") == "http://127.0.0.1:9/base/a%20b"
    with pytest.raises(PassthroughRefused):
        upstream_url("mock://", "models")


def test_forwarded_headers_drop_what_is_not_the_clients_to_send():
    out = forwarded_headers({"Host": "gw", "Content-Length": "3", "Transfer-Encoding": "chunked",
                             "Authorization": "Bearer k", "x-api-key": "k", "Accept": "*/*",
                             "Connection": "Upgrade", "Upgrade": "websocket",
                             "Accept-Encoding": "br", "Content-Type": "application/json"})
    assert out == {"accept": "*/*", "content-type": "application/json"}
