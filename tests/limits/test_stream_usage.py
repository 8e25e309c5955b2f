"""Streamed requests are counted with the usage the provider reports, not a guess: upstreams
that report 1000 prompt and 500 completion tokens in their stream are recorded as 1000/500,
budgets see the real cost, the client gets only the chunks it asked for, and a provider that
reports nothing is estimated and marked so. In process, against real fake upstreams."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import orjson
import pytest

from gateway.cli import main
from gateway.middleware.stream_usage import StreamUsage
from gateway.middleware.usage import query_usage, usage_db, write_usage
from gateway.providers.sse import DONE

from ..fake_upstream import FakeOpenAI
from ..providers.fake_anthropic import API_KEY, FakeAnthropic, Reply
from ..providers.fake_bedrock import FakeBedrock
from ..providers.fake_cohere import FakeCohere
from ..providers.fake_gemini import FakeGemini
from ..providers.fake_server import Script
from ..server.inprocess import app_client

RAW_KEY = "password"  # sha256 below
KEYS = """
keys:
  research:
    key_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
    budget: {usd: 0.003, period: monthly}
"""
AUTH = {"Authorization": f"Bearer {RAW_KEY}"}
# USD per 1M tokens: 1000 prompt + 500 completion tokens cost $0.002.
PRICING = """
pricing:
  "up/m": {input: 1, output: 2}
"""
OPENAI_CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}"}}
routes:
  chat: {{target: {{provider: up, model: m}}}}
"""
NATIVE_CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  native: {provider}
routes:
  chat: {{target: {{provider: native, model: {model}}}}}
"""


def stream_request(**extra) -> dict:
    return {"model": "chat", "stream": True, "max_tokens": 50,
            "messages": [{"role": "user", "content": "hello there"}], **extra}


def events_of(text: str) -> list[dict]:
    return [orjson.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: {")]


async def recorded(client, count: int = 1) -> list[dict]:
    """/admin/usage rows once ``count`` requests are written (the writer flushes each second)."""
    deadline = time.monotonic() + 5
    while True:
        rows = (await client.get("/admin/usage?period=all")).json()["usage"]
        if sum(r["requests"] for r in rows) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


@pytest.fixture
def reporting(upstream: FakeOpenAI) -> FakeOpenAI:
    upstream.usage = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
    return upstream


async def test_openai_stream_usage_is_recorded_and_hidden(reporting: FakeOpenAI, tmp_path):
    """The gateway asks for the usage chunk, records 1000/500 from it, and the client, which
    did not ask for it, never sees it."""
    async with app_client(OPENAI_CONFIG.format(base_url=reporting.base_url), tmp_path) as client:
        r = await client.post("/v1/chat/completions", json=stream_request())
        rows = await recorded(client)
    assert reporting.requests[-1].body["stream_options"] == {"include_usage": True}
    events = events_of(r.text)
    assert r.text.endswith("data: [DONE]\n\n")
    assert all(e["choices"] for e in events)  # no usage-only chunk
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == \
        "fake answer from m"
    assert [(row["prompt_tokens"], row["completion_tokens"], row["estimated_requests"])
            for row in rows] == [(1000, 500, 0)]


async def test_openai_stream_usage_reaches_a_client_that_asked(reporting: FakeOpenAI, tmp_path):
    """A client that asked for include_usage gets the usage chunk as the upstream sent it."""
    async with app_client(OPENAI_CONFIG.format(base_url=reporting.base_url), tmp_path) as client:
        r = await client.post("/v1/chat/completions",
                              json=stream_request(stream_options={"include_usage": True}))
        rows = await recorded(client)
    last = events_of(r.text)[-1]
    assert last["choices"] == [] and last["usage"]["prompt_tokens"] == 1000
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == (1000, 500)


async def test_budget_counts_the_reported_stream_usage(reporting: FakeOpenAI, tmp_path):
    """Two streams of $0.002 each spend a $0.003 budget: the third request is refused."""
    config = OPENAI_CONFIG.format(base_url=reporting.base_url) + KEYS + PRICING
    async with app_client(config, tmp_path) as client:
        for _ in range(2):
            r = await client.post("/v1/chat/completions", json=stream_request(), headers=AUTH)
            assert r.status_code == 200
        rows = await recorded(client, 2)
        refused = await client.post("/v1/chat/completions", json=stream_request(), headers=AUTH)
    assert rows[0]["cost_usd"] == pytest.approx(0.004)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "budget_exceeded"


async def test_silent_provider_is_estimated_and_marked(upstream: FakeOpenAI, tmp_path, capsys):
    """An upstream that ignores stream_options: the usage is estimated, and /admin/usage and
    `gateway usage` say how many requests were."""
    upstream.stream_usage = False
    config = OPENAI_CONFIG.format(base_url=upstream.base_url)
    async with app_client(config, tmp_path) as client:
        r = await client.post("/v1/chat/completions", json=stream_request())
        rows = await recorded(client)
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    assert rows[0]["estimated_requests"] == 1
    assert rows[0]["prompt_tokens"] > 0 and rows[0]["completion_tokens"] > 0
    capsys.readouterr()
    assert main(["usage", "--config", str(tmp_path / "gateway.yaml"), "--period", "all"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "ESTIMATED" in out[0].split()
    assert out[1].split()[-1] == "1"
    assert "estimates" in out[-1]


async def test_unreported_whole_answer_is_estimated(upstream: FakeOpenAI, tmp_path):
    """A whole (not streamed) answer without usage is estimated too, not counted as 0."""
    upstream.usage = None
    async with app_client(OPENAI_CONFIG.format(base_url=upstream.base_url), tmp_path) as client:
        r = await client.post("/v1/chat/completions", json={**stream_request(), "stream": False})
        rows = await recorded(client)
    assert r.status_code == 200
    assert rows[0]["estimated_requests"] == 1 and rows[0]["completion_tokens"] > 0


def _anthropic():
    fake = FakeAnthropic().start()
    fake.script("claude-x", Reply(usage={"input_tokens": 1000, "output_tokens": 500}))
    return fake, f'{{type: anthropic, base_url: "{fake.base_url}", api_key: {API_KEY}}}', "claude-x"


def _gemini():
    fake = FakeGemini().start()
    fake.script("gemini-x", Script(usage=(1000, 500)))
    return fake, f'{{type: gemini, base_url: "{fake.base_url}", api_key: {fake.api_key}}}', "gemini-x"


def _cohere():
    fake = FakeCohere().start()
    fake.script("command-x", Script(usage=(1000, 500)))
    return fake, f'{{type: cohere, base_url: "{fake.base_url}", api_key: {fake.api_key}}}', "command-x"


def _bedrock():
    fake = FakeBedrock().start()
    fake.script("bedrock-x", Script(usage=(1000, 500)))
    provider = (f'{{type: bedrock, base_url: "{fake.base_url}", region: us-west-2, '
                'aws_access_key_id: AKIDFAKEBEDROCK, aws_secret_access_key: "fake/secret+key"}')
    return fake, provider, "bedrock-x"


@pytest.mark.parametrize("make", [_anthropic, _gemini, _cohere, _bedrock],
                         ids=["anthropic", "gemini", "cohere", "bedrock"])
async def test_native_stream_usage_is_recorded_and_hidden(make, tmp_path):
    """Anthropic, Gemini, Cohere and Bedrock usage events give the recorded usage; the client,
    which did not ask, gets no usage chunk."""
    fake, provider, model = make()
    try:
        config = NATIVE_CONFIG.format(provider=provider, model=model)
        async with app_client(config, tmp_path) as client:
            r = await client.post("/v1/chat/completions", json=stream_request())
            rows = await recorded(client)
    finally:
        fake.stop()
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    assert all(e["choices"] for e in events_of(r.text))
    assert [(row["prompt_tokens"], row["completion_tokens"], row["estimated_requests"])
            for row in rows] == [(1000, 500, 0)]


def test_usage_chunk_split_across_reads_is_found_and_dropped():
    """Events cut anywhere (here: byte by byte, CRLF line ends) are reassembled: the usage is
    read, the usage-only event dropped, everything else passed on unchanged."""
    content = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}\r\n\r\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":500}}\r\n\r\n'
    stream = StreamUsage(strip=True)
    out = b"".join(stream.feed(bytes([b])) for b in content + usage + DONE) + stream.end()
    assert out == content + DONE
    assert stream.usage == {"prompt_tokens": 1000, "completion_tokens": 500}
    assert stream.events == 1


def test_usage_table_from_before_gets_the_estimated_column(tmp_path):
    """A usage table written (in gateway.db) before estimated rows were marked moves to
    usage.db: its rows read back as reported (0 estimated)."""
    path = usage_db(str(tmp_path))
    db = sqlite3.connect(tmp_path / "gateway.db")
    db.execute("CREATE TABLE usage (day TEXT NOT NULL, key TEXT NOT NULL, route TEXT NOT NULL, "
               "target TEXT NOT NULL, requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, "
               "completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, "
               "PRIMARY KEY (day, key, route, target))")
    db.execute("INSERT INTO usage VALUES ('2026-01-01', '', 'chat', 'up/m', 2, 10, 20, 0.5)")
    db.commit()
    db.close()
    write_usage(path, {("2026-01-01", "", "chat", "up/m"): [1, 5, 5, 0.25, 1]})
    assert query_usage(path) == [{"key": "", "route": "chat", "target": "up/m", "requests": 3,
                                  "prompt_tokens": 15, "completion_tokens": 25, "cost_usd": 0.75,
                                  "estimated_requests": 1}]
