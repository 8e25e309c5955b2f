"""Credentials never leave their host: promises of issue 11, items 6-11 and 15, each against the
real app and real HTTP upstreams on loopback."""

from __future__ import annotations

import pytest
from aiohttp import web

from .upstreams import Scripted, chat, gateway


def redirecting_to(url: str, status: int = 302) -> Scripted:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": url})
    return Scripted(answer)


def html_page(content_type: str = "text/html; charset=utf-8") -> Scripted:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=b"<html><body>Sign in to the Wi-Fi</body></html>",
                            headers={"Content-Type": content_type})
    return Scripted(answer)


# -- 6. upstream redirects are never followed ------------------------------------------------

REDIRECT_CONFIG = """
version: 1
server: {{data_dir: data}}
defaults: {{retry: {{attempts: 1}}}}
providers:
  up:
    type: {type}
    base_url: {base_url}
    api_key: key-for-up-only-1234
    headers: {{x-team-secret: team-secret-5678}}
  demo: {{type: mock}}
routes:
  direct: {{target: {{provider: up, model: m}}}}
  guarded:
    fallback:
      targets:
        - target: {{provider: up, model: m}}
        - target: {{provider: demo, model: backup}}
"""


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("kind", ["openai-compatible", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_redirects_are_never_followed(tmp_path, status, kind, stream):
    """A 3xx from the upstream is an upstream error naming the host it pointed at; the second
    host never hears from the gateway, so the key and the configured headers stay home."""
    with Scripted() as elsewhere:
        # "localhost" makes it another host as far as the client is concerned
        target = f"http://localhost:{elsewhere.port}/v1/chat/completions?token=t0ken"
        with redirecting_to(target, status) as up:
            config = REDIRECT_CONFIG.format(type=kind, base_url=up.base_url)
            async with gateway(tmp_path, config) as (client, _):
                r = await client.post("/v1/chat/completions", json=chat("direct", stream))
        assert len(up.seen) == 1
    assert elsewhere.seen == []
    assert r.status_code == 502
    message = r.json()["error"]["message"]
    assert f"upstream answered {status} redirect to localhost:{elsewhere.port}" in message
    assert "does not follow redirects" in message and "fix base_url" in message
    assert "t0ken" not in message


async def test_a_redirect_falls_back_to_the_next_target(tmp_path):
    """The redirect is a failed attempt like a 502: the fallback answers."""
    with Scripted() as elsewhere, redirecting_to(elsewhere.base_url + "/chat/completions") as up:
        async with gateway(tmp_path, REDIRECT_CONFIG.format(
                type="openai-compatible", base_url=up.base_url)) as (client, _):
            r = await client.post("/v1/chat/completions", json=chat("guarded"))
    assert r.status_code == 200 and r.headers["x-gateway-target"] == "demo/backup"
    assert elsewhere.seen == []


async def test_health_checks_never_follow_redirects(tmp_path):
    """The active health check reports a redirect as unhealthy and does not follow it."""
    with Scripted() as elsewhere, redirecting_to(f"http://localhost:{elsewhere.port}/v1/models") as up:
        async with gateway(tmp_path, REDIRECT_CONFIG.format(
                type="openai-compatible", base_url=up.base_url)) as (_, graph):
            error = await graph.providers["up"].check_health(5)
    assert error is not None and f"302 redirect to localhost:{elsewhere.port}" in error
    assert up.seen[0].path == "/v1/models" and elsewhere.seen == []


# -- 15. a 2xx that is not what was asked for is an upstream error --------------------------

HTML_CONFIG = """
version: 1
server: {{data_dir: data}}
defaults:
  retry: {{attempts: 1}}
  circuit_breaker: {{failure_threshold: 3, min_requests: 100, cooldown: 60s}}
providers:
  portal: {{type: openai-compatible, base_url: {base_url}}}
  demo: {{type: mock}}
routes:
  direct: {{target: {{provider: portal, model: m}}}}
  retried: {{target: {{provider: portal, model: m, retry: {{attempts: 2, backoff: constant, base: 1ms}}}}}}
  guarded:
    fallback:
      targets:
        - target: {{provider: portal, model: m}}
        - target: {{provider: demo, model: backup}}
"""


@pytest.mark.parametrize("stream", [False, True])
async def test_an_html_200_is_an_upstream_error_not_a_completion(tmp_path, stream):
    """An HTML page answered with 200 (a captive portal, a wrong base_url) is a 502 that says
    what came back, never relayed as a successful completion."""
    with html_page() as portal:
        async with gateway(tmp_path, HTML_CONFIG.format(base_url=portal.base_url)) as (client, _):
            r = await client.post("/v1/chat/completions", json=chat("direct", stream))
    assert r.status_code == 502
    expected = "text/event-stream" if stream else "JSON"
    assert f"upstream answered 200 with text/html where {expected} was expected" in \
        r.json()["error"]["message"]


async def test_an_html_200_is_retried_falls_back_and_opens_the_breaker(tmp_path):
    """It is a server-class failure: retried, fallen back from, counted by the breaker."""
    with html_page() as portal:
        async with gateway(tmp_path, HTML_CONFIG.format(base_url=portal.base_url)) as (client, _):
            retried = await client.post("/v1/chat/completions", json=chat("retried"))
            assert len(portal.seen) == 2 and retried.headers["x-gateway-attempts"] == "2"
            guarded = await client.post("/v1/chat/completions", json=chat("guarded"))
            assert guarded.status_code == 200
            assert guarded.headers["x-gateway-target"] == "demo/backup"
            blocked = await client.post("/v1/chat/completions", json=chat("direct"))
    assert blocked.status_code == 503 and "circuit open" in blocked.json()["error"]["message"]
    assert len(portal.seen) == 3


async def test_json_with_a_plain_text_content_type_is_still_an_answer(tmp_path):
    """Only the body decides: a JSON answer labelled text/plain is relayed."""
    async def answer(request):
        return web.Response(text='{"id": "x", "choices": []}', content_type="text/plain")
    with Scripted(answer) as up:
        async with gateway(tmp_path, HTML_CONFIG.format(base_url=up.base_url)) as (client, _):
            r = await client.post("/v1/chat/completions", json=chat("direct"))
    assert r.status_code == 200 and r.json() == {"id": "x", "choices": []}
