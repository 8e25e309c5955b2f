"""x-gateway-overhead-ms and the gateway_overhead_seconds histogram count the gateway's own
time only: never the time spent waiting on upstreams (failed attempts included) or sleeping
between retries on purpose."""

from __future__ import annotations

from ..fake_upstream import FakeOpenAI
from .inprocess import app_client

BACKOFF = 0.2  # seconds between attempts
CONFIG = """
version: 1
defaults:
  retry: {{attempts: 2, backoff: constant, base: 200ms, jitter: false}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}"}}
routes:
  chat: {{target: {{provider: up, model: flaky}}}}
"""
# Generous: the gateway's own work takes a few ms; the backoff alone is 200.
BOUND_MS = BACKOFF * 1000 / 4


def _chat() -> dict:
    return {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


async def test_overhead_leaves_out_a_failed_attempt_and_the_backoff(upstream: FakeOpenAI, tmp_path):
    """An upstream 500, a 200 ms backoff, then an answer: the overhead stays small."""
    upstream.script("flaky", 500)
    async with app_client(CONFIG.format(base_url=upstream.base_url), tmp_path) as client:
        before = _histogram_sum((await client.get("/metrics")).text)
        r = await client.post("/v1/chat/completions", json=_chat())
        after = _histogram_sum((await client.get("/metrics")).text)
    assert r.status_code == 200 and r.headers["x-gateway-attempts"] == "2"
    assert 0 <= float(r.headers["x-gateway-overhead-ms"]) < BOUND_MS
    assert 0 <= after - before < BOUND_MS / 1000


async def test_overhead_leaves_out_every_failed_attempt(upstream: FakeOpenAI, tmp_path):
    """Every attempt fails (with a backoff between them): the overhead stays small too."""
    upstream.script("flaky", 500, 500)
    async with app_client(CONFIG.format(base_url=upstream.base_url), tmp_path) as client:
        r = await client.post("/v1/chat/completions", json=_chat())
    assert r.status_code == 500 and r.headers["x-gateway-attempts"] == "2"
    assert 0 <= float(r.headers["x-gateway-overhead-ms"]) < BOUND_MS


async def test_streamed_overhead_leaves_out_the_backoff(upstream: FakeOpenAI, tmp_path):
    """The same for a stream, whose overhead is measured up to its first byte."""
    upstream.script("flaky", 500)
    async with app_client(CONFIG.format(base_url=upstream.base_url), tmp_path) as client:
        r = await client.post("/v1/chat/completions", json={**_chat(), "stream": True})
    assert r.status_code == 200 and "data: [DONE]" in r.text
    assert 0 <= float(r.headers["x-gateway-overhead-ms"]) < BOUND_MS


def _histogram_sum(metrics: str) -> float:
    return sum(float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("gateway_overhead_seconds_sum"))
