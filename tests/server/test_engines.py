"""The opt-in uvicorn engine serves the same gateway: chat, streams, reload, workers."""

from __future__ import annotations

import time

import httpx
import openai

from ..gateway_process import write_atomically

CONFIG = """
version: 1
providers:
  demo: {{type: mock}}
routes:
  live: {{target: {{provider: demo, model: {model}}}}}
"""


def test_uvicorn_engine_end_to_end(gateway_factory):
    """Chat, a stream and a hot reload behave the same on uvicorn."""
    gw = gateway_factory(CONFIG.format(model="v1"), args=("--engine", "uvicorn"))
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
    assert '"engine":"uvicorn"' in gw.log()


def test_uvicorn_engine_with_two_workers(gateway_factory):
    """--workers 2 shares one socket between two uvicorn workers."""
    gw = gateway_factory(CONFIG.format(model="w"), args=("--engine", "uvicorn", "--workers", "2"))
    statuses = [httpx.post(gw.base_url + "/v1/chat/completions", timeout=10, json={
        "model": "live", "messages": [{"role": "user", "content": "x"}]}).status_code
        for _ in range(20)]
    assert statuses == [200] * 20
    time.sleep(0.3)
    assert gw.log().count('"event":"serving"') == 2
