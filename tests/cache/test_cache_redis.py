"""The cache in Redis (`server.state: redis://…`): two real `gateway serve` processes on one
redis-server share it; a cache that cannot be reached is a miss, never an error."""

from __future__ import annotations

import httpx
import redis

from ..cli_runner import run_cli
from ..inprocess_gateway import poll
from ..redis_fixture import RedisServer, redis_server  # noqa: F401


def config(url: str, data_dir) -> str:
    return f"""
version: 1
server: {{state: "{url}?socket_timeout=0.5", data_dir: {data_dir}}}
providers:
  demo: {{type: mock}}
cache: {{mode: simple, ttl: 5m}}
routes:
  chat: {{target: {{provider: demo, model: m}}}}
"""


def ask(gw, text: str = "hi", **extra) -> httpx.Response:
    return gw.post("/v1/chat/completions",
                   json={"model": "chat", "messages": [{"role": "user", "content": text}], **extra})


def test_two_gateways_share_one_cache(gateway_factory, redis_server: RedisServer, tmp_path):  # noqa: F811
    """An answer stored through one gateway is a hit on the other (their data dirs differ);
    `gateway cache stats` reads the shared counts from Redis, `clear` empties it."""
    a, b = [gateway_factory(config(redis_server.url, tmp_path / f"data-{n}"), name=f"{n}.yaml")
            for n in ("a", "b")]
    first = ask(a)
    assert first.headers["x-gateway-cache"] == "miss"
    # The answer too is stored by the pipeline sender after it went out: wait until it is.
    poll(lambda: run_cli("cache", "stats", "--json", "--config", str(tmp_path / "a.yaml")).json,
         lambda rows: bool(rows) and rows[0]["entries"] == 1, 5, "the answer stored in Redis")
    shared = ask(b)
    assert shared.headers["x-gateway-cache"] == "hit" and shared.json() == first.json()
    # The hit is counted in Redis by the backend's pipeline sender, after the answer went out.
    stats = poll(lambda: run_cli("cache", "stats", "--json", "--config", str(tmp_path / "a.yaml")).json,
                 lambda rows: bool(rows) and rows[0]["hits"] == 1, 5, "the hit counted in Redis")
    assert stats == [{"namespace": "default", "entries": 1, "bytes": stats[0]["bytes"], "hits": 1,
                      "misses": 1, "saved_tokens": stats[0]["saved_tokens"], "saved_usd": 0.0}]
    assert stats[0]["bytes"] > 0 and stats[0]["saved_tokens"] > 0
    cleared = run_cli("cache", "clear", "--config", str(tmp_path / "b.yaml"))
    assert "deleted 1 cached answer" in cleared.out
    assert ask(a).headers["x-gateway-cache"] == "miss"


def test_unreachable_redis_is_a_miss(gateway_app, redis_server: RedisServer, tmp_path):  # noqa: F811
    """With Redis down, cacheable requests are answered upstream (miss), not refused (the
    gateway in process)."""
    gw = gateway_app(config(redis_server.url, tmp_path / "data"))
    redis_server.kill()
    answers = [ask(gw) for _ in range(2)]
    assert [r.status_code for r in answers] == [200, 200]
    assert [r.headers["x-gateway-cache"] for r in answers] == ["miss", "miss"]
    assert "cache_unavailable" in gw.log()


SEMANTIC = """
cache:
  mode: semantic
  ttl: 5m
  semantic: {route: embed, threshold: 0.8}
routes:
  chat: {target: {provider: demo, model: m}}
  embed: {target: {provider: demo, model: e}}
"""


def test_semantic_search_spans_gateways(gateway_factory, redis_server: RedisServer, tmp_path):  # noqa: F811
    """The vectors live in Redis too: a reworded question on one gateway finds the answer
    stored through the other, with its similarity; an unrelated one does not."""
    text = config(redis_server.url, tmp_path / "data-{n}").split("cache:")[0] + SEMANTIC
    a, b = [gateway_factory(text.replace("{n}", n), name=f"{n}.yaml") for n in ("a", "b")]
    first = ask(a, "How do I reset my password?")
    stored = redis.Redis(host="127.0.0.1", port=redis_server.port)
    poll(lambda: stored.keys("gateway:cache:v:*") and stored.keys("gateway:cache:e:*"), bool,
         what="the entry and its vector not in Redis")
    stored.close()
    similar = ask(b, "How can I reset my password?")
    unrelated = ask(b, "What is the capital of France?")
    assert first.headers["x-gateway-cache"] == "miss"
    assert similar.headers["x-gateway-cache"] == "hit" and similar.json() == first.json()
    assert 0.8 <= float(similar.headers["x-gateway-cache-similarity"]) < 1.0
    assert unrelated.headers["x-gateway-cache"] == "miss"
