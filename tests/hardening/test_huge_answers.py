"""An upstream that answers without end (a chunked body that never stops, a small gzip body
that inflates to gigabytes) cannot make the gateway hold it all: past
providers.http.MAX_ANSWER bytes the attempt fails as an upstream server error (502, retried
and fallen back like one) and the next request is served as usual."""

from __future__ import annotations

import gzip
import json

import pytest
from aiohttp import web

from gateway.providers import http as provider_http

from ..background_app import BackgroundApp

ANSWER = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                       "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
BOMB = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MiB of spaces in ~64 KiB


class Endless(BackgroundApp):
    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/endless/v1/chat/completions", self.endless)
        app.router.add_post("/bomb/v1/chat/completions", self.bomb)
        app.router.add_post("/fine/v1/chat/completions", self.fine)

    async def endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b'{"padding": "')
            for _ in range(4096):  # 256 MiB at most, if nobody stops reading
                await response.write(b"x" * 65536)
                self.sent += 65536
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def bomb(self, request: web.Request) -> web.Response:
        return web.Response(body=BOMB, headers={"Content-Type": "application/json",
                                                "Content-Encoding": "gzip"})

    async def fine(self, request: web.Request) -> web.Response:
        return web.json_response(ANSWER)


@pytest.fixture
def upstream():
    with Endless() as app:
        yield app


CONFIG = """
version: 1
defaults: {{retry: {{attempts: 1}}}}
providers:
  endless: {{type: openai-compatible, base_url: "http://127.0.0.1:{port}/endless/v1"}}
  bomb: {{type: openai-compatible, base_url: "http://127.0.0.1:{port}/bomb/v1"}}
  fine: {{type: openai-compatible, base_url: "http://127.0.0.1:{port}/fine/v1"}}
routes:
  endless: {{target: {{provider: endless, model: m}}}}
  bomb: {{target: {{provider: bomb, model: m}}}}
  rescued: {{fallback: {{targets: [{{target: {{provider: endless, model: m}}}},
                                   {{target: {{provider: fine, model: m}}}}]}}}}
"""


def ask(gw, route: str):
    return gw.post("/v1/chat/completions", json={
        "model": route, "messages": [{"role": "user", "content": "hi"}]})


@pytest.mark.parametrize("route", ["endless", "bomb"])
def test_an_answer_past_the_cap_is_a_502_not_all_of_it(gateway_app, upstream, monkeypatch, route):
    monkeypatch.setattr(provider_http, "MAX_ANSWER", 1024 * 1024)
    gw = gateway_app(CONFIG.format(port=upstream.port))
    answer = ask(gw, route)
    assert answer.status_code == 502, answer.text[:300]
    error = answer.json()["error"]
    assert "larger than 1MB" in error["message"], error
    if route == "endless":
        assert upstream.sent < 64 * 1024 * 1024  # it stopped reading long before the end


def test_a_fallback_moves_on_from_a_huge_answer(gateway_app, upstream, monkeypatch):
    monkeypatch.setattr(provider_http, "MAX_ANSWER", 1024 * 1024)
    gw = gateway_app(CONFIG.format(port=upstream.port))
    answer = ask(gw, "rescued")
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["x-gateway-target"] == "fine/m"
    assert json.loads(answer.text)["choices"][0]["message"]["content"] == "ok"
