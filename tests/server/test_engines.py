"""Every engine serves the same gateway: chat, streams, reload, workers; the default is uvicorn;
HTTP/2 where the engine has it. The engines' limits (header timeout, connection cap, drain on
SIGTERM, a busy port) are in tests/hardening/test_streams_shutdown.py."""

from __future__ import annotations

import sys
import time

import httpx
import openai
import pytest

from gateway.server.engines import DEFAULT_ENGINE, ENGINES, EngineError, engine

from .. import loopback
from ..gateway_process import write_atomically

CONFIG = """
version: 1
providers:
  demo: {{type: mock}}
routes:
  live: {{target: {{provider: demo, model: {model}}}}}
"""


@pytest.mark.parametrize("name", ENGINES)
def test_each_engine_end_to_end(gateway_factory, name):
    """Chat, a stream and a hot reload behave the same on every engine."""
    gw = gateway_factory(CONFIG.format(model="v1"), args=("--engine", name))
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.with_raw_response.create(
        model="live", messages=[{"role": "user", "content": "hello"}])
    assert reply.parse().choices[0].message.content == "Mock reply from v1: hello"
    assert reply.headers["x-gateway-route"] == "live"
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="live", messages=[{"role": "user", "content": "hi"}], stream=True) if c.choices)
    assert text == "Mock reply from v1: hi"
    write_atomically(gw.config_path, CONFIG.format(model="v2"))
    gw.wait_for_version(2)
    assert client.chat.completions.create(
        model="live", messages=[{"role": "user", "content": "x"}]).model == "v2"
    assert f'"engine":"{name}"' in gw.log()


@pytest.mark.parametrize("name", ENGINES)
def test_each_engine_with_two_workers(gateway_factory, name):
    """--workers 2: two worker processes serve one port."""
    gw = gateway_factory(CONFIG.format(model="w"), args=("--engine", name, "--workers", "2"))
    statuses = [loopback.post(gw.base_url + "/v1/chat/completions", timeout=10, json={
        "model": "live", "messages": [{"role": "user", "content": "x"}]}).status_code
        for _ in range(20)]
    assert statuses == [200] * 20
    deadline = time.monotonic() + 10
    while gw.log().count('"event":"serving"') < 2:
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.05)


def test_the_default_engine_is_uvicorn(gateway_factory):
    """A config that names no engine runs on uvicorn (httptools), a core dependency."""
    assert DEFAULT_ENGINE == "uvicorn"
    gw = gateway_factory(CONFIG.format(model="d"))
    assert loopback.get(gw.base_url + "/healthz", timeout=5).status_code == 200
    assert '"engine":"uvicorn"' in gw.log()


@pytest.mark.parametrize("name,http2", [("hypercorn", True), ("granian", True), ("uvicorn", False)])
def test_http2_where_the_engine_has_it(gateway_app, name, http2):
    """hypercorn and granian answer HTTP/2 over cleartext (prior knowledge); uvicorn speaks
    HTTP/1.1 only."""
    gw = gateway_app(CONFIG.format(model="h2"))
    url = gw.listen(name)
    with httpx.Client(http1=False, http2=True, timeout=5) as h2:
        if http2:
            reply = h2.post(url + "/v1/chat/completions", json={
                "model": "live", "messages": [{"role": "user", "content": "two"}]})
            assert reply.http_version == "HTTP/2"
            assert reply.json()["choices"][0]["message"]["content"] == "Mock reply from h2: two"
        else:
            # The server drops the connection: seen as a disconnect or, when the client's
            # preface is still unread, a reset.
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                h2.get(url + "/healthz")


def test_granian_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "granian", None)  # as if not installed
    with pytest.raises(EngineError, match=r"pip install 'bodhi-gateway\[granian\]'"):
        engine("granian", "127.0.0.1", 8080)
