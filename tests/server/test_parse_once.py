"""An answer's JSON is parsed once per request, however many features read it (rate limits and
budgets, the response cache, a canary's counts, output-guard, pii-redact): they share
UpstreamResponse.json(). A middleware that replaces the body makes the ones after it read the
new answer, not a stale parse."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import httpx
import orjson
import pytest

from gateway.config.compiler import Runtime, compile_bytes
from gateway.graph.pipeline import build_pipeline
from gateway.server.app import create_app
from gateway.server.reload import GraphHolder, Reloader

from ..fake_upstream import Behaviour, FakeOpenAI
from .inprocess import app_client

RAW_KEY = "sk-parse-once-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {RAW_KEY}"}
EMAIL = "jane.doe@example.com"

# Every reader of an answer's JSON on: limits and a budget (usage), the cache (is the answer
# complete), a canary (its arms' tokens), output-guard (in the given mode) and pii-redact
# restoring values into the answer. The plugins' order puts the guard's answer side after
# pii-redact's, so the guard reads the restored answer.
CONFIG = """
version: 1
server: {{state: memory}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}"}}
routes:
  chat:
    canary:
      percent: 50
      stable: {{target: {{provider: up, model: stable-model}}}}
      canary: {{target: {{provider: up, model: canary-model}}}}
keys:
  client:
    key_sha256: {digest}
    limits: {{requests_per_minute: 1000, tokens_per_minute: 1000000}}
    budget: {{usd: 1000, period: monthly}}
pricing:
  up/stable-model: {{input: 1, output: 2}}
  up/canary-model: {{input: 1, output: 2}}
cache: {{mode: {cache}}}
plugins:
  - name: output-guard
    config: {{deny: ["{deny}"], on_fail: {on_fail}}}
  - name: pii-redact
    config: {{mode: mask, restore: true}}
"""


def config(upstream: FakeOpenAI, *, on_fail: str, cache: str = "simple",
           deny: str = "never-matches-anything") -> str:
    return CONFIG.format(base_url=upstream.base_url, on_fail=on_fail, cache=cache, deny=deny,
                         digest=hashlib.sha256(RAW_KEY.encode()).hexdigest())


@pytest.fixture
def answer_parses(monkeypatch) -> list[bytes]:
    """Every orjson.loads of the fake upstream's answer (its id is chatcmpl-fake)."""
    calls: list[bytes] = []
    real = orjson.loads

    def counting(data):
        if isinstance(data, (bytes, str)) and "chatcmpl-fake" in (
                data.decode(errors="replace") if isinstance(data, bytes) else data):
            calls.append(data)
        return real(data)

    monkeypatch.setattr(orjson, "loads", counting)
    return calls


def chat(content: str = "hello", **extra) -> dict:
    return {"json": {"model": "chat", "messages": [{"role": "user", "content": content}],
                     **extra}, "headers": AUTH}


@pytest.mark.parametrize("on_fail", ["flag", "fallback"])
async def test_each_answer_is_parsed_once(upstream, tmp_path, answer_parses, on_fail):
    """Through a real request with limits, a budget, the cache, a canary and both plugins
    on, each upstream answer is parsed once; the usage still reaches the limits."""
    remaining = []
    async with app_client(config(upstream, on_fail=on_fail), tmp_path) as client:
        for n in range(4):  # every answer a cache miss (a new prompt)
            r = await client.post("/v1/chat/completions", **chat(f"hello {n}"))
            assert r.status_code == 200, r.text
            assert r.headers["x-gateway-cache"] == "miss"
            remaining.append(int(r.headers["x-ratelimit-remaining-tokens"]))
    assert len(answer_parses) == 4, f"{len(answer_parses)} parses of 4 answers"
    # Each answer's reported usage (7 tokens) settled its reservation.
    assert [a - b for a, b in zip(remaining, remaining[1:])] == [7, 7, 7]


async def test_a_restored_answer_is_what_the_guard_reads(upstream, tmp_path):
    """pii-redact puts the e-mail back into the answer (a new body); output-guard, after it,
    checks that new answer and flags the address, not the placeholder it replaced."""
    placeholder_answer = {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Write to [EMAIL_1]."}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    for model in ("stable-model", "canary-model"):
        upstream.script(model, Behaviour(body=json.dumps(placeholder_answer)))
    text = config(upstream, on_fail="flag", cache="off", deny="jane\\\\.doe@")
    async with app_client(text, tmp_path) as client:
        r = await client.post("/v1/chat/completions", **chat(f"my address is {EMAIL}"))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == f"Write to {EMAIL}."
    assert "deny[0]" in r.headers["x-gateway-guard"]
    assert EMAIL not in json.dumps(upstream.requests[-1].body)


class ReadAnswer:
    """Reads the answer's JSON (so it is parsed and kept) and reports its content."""

    name = "read"

    async def __call__(self, ctx, call_next):
        response = await call_next(ctx)
        response.headers["x-content"] = response.json()["choices"][0]["message"]["content"]
        return response


class ReplaceBody:
    """Reads the answer, then assigns a new body."""

    name = "replace"

    async def __call__(self, ctx, call_next):
        response = await call_next(ctx)
        assert response.json()["choices"]
        response.body = orjson.dumps({"choices": [{"message": {"content": "replaced"}}]})
        return response


async def test_an_assigned_body_is_what_outer_middleware_reads(upstream, tmp_path):
    """A middleware that assigns a new body after the answer was parsed: the middleware
    outside it reads the new body's JSON."""
    text = f"""
version: 1
providers:
  up: {{type: openai-compatible, base_url: "{upstream.base_url}"}}
routes:
  chat: {{target: {{provider: up, model: m}}}}
"""
    path = str(tmp_path / "gateway.yaml")
    runtime = Runtime()
    graph = compile_bytes(text.encode(), path, version=1, runtime=runtime)
    chain = (ReadAnswer(), ReplaceBody(), ReadAnswer())
    graph = dataclasses.replace(graph, middleware=chain, handler=build_pipeline(chain))
    app = create_app(Reloader(path, runtime, GraphHolder(graph)), watch_config=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1", timeout=10) as client:
            r = await client.post("/v1/chat/completions", json={
                "model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    finally:
        await runtime.clients.close()
        await runtime.state.aclose()
    assert r.status_code == 200
    assert r.json() == {"choices": [{"message": {"content": "replaced"}}]}
    assert r.headers["x-content"] == "replaced"
