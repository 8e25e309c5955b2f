"""/metrics after a scripted mix of requests (success, stream, fallback with a retry, a rate
limit, a cache miss and hit, an unknown model), sent with the official openai client: every
family the built-in metrics plugin counts from the RequestRecord, with bounded labels."""

from __future__ import annotations

import hashlib
import re

import openai
import pytest

KEY = "sk-metrics-team-a"
CONFIG = """
version: 1
defaults:
  retry: {{attempts: 2, base: 1ms, max: 2ms, jitter: false}}
providers:
  up: {{type: openai-compatible, base_url: "{url}"}}
keys:
  team-a:
    key_sha256: {sha}
    routes: ["*"]
    budget: {{usd: 100000, period: monthly}}
pricing:
  "up/m1": {{input: 1000000, output: 1000000}}   # $1 a token: 3 in + 4 out = $7 an answer
routes:
  main: {{target: {{provider: up, model: m1}}}}
  smart:
    fallback:
      targets:
        - target: {{provider: up, model: bad}}
        - target: {{provider: up, model: m1}}
  limited:
    target: {{provider: up, model: m1}}
    limits: {{requests_per_minute: 1}}
  cached:
    target: {{provider: up, model: m1}}
    cache: {{mode: simple}}
"""
HELLO = [{"role": "user", "content": "hello"}]


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric: {sorted label pairs: value}."""
    found = {}
    for labels, value in re.findall(rf"^{name}\{{(.*?)\}} (\S+)$", text, re.M):
        pairs = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels)))
        found[pairs] = float(value)
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for pairs, v in samples(text, name).items()
               if set(labels.items()) <= set(pairs))


@pytest.fixture
def scripted(gateway_app, upstream):
    gw = gateway_app(CONFIG.format(url=upstream.base_url,
                                   sha=hashlib.sha256(KEY.encode()).hexdigest()))
    upstream.script("bad", 500, 500)
    with gw.openai(api_key=KEY) as client:
        client.chat.completions.create(model="main", messages=HELLO)
        chunks = list(client.chat.completions.create(model="main", messages=HELLO, stream=True))
        assert chunks
        client.chat.completions.create(model="smart", messages=HELLO)
        client.chat.completions.create(model="limited", messages=HELLO)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="limited", messages=HELLO)
        client.chat.completions.create(model="cached", messages=HELLO)
        hit = client.chat.completions.with_raw_response.create(model="cached", messages=HELLO)
        assert hit.headers["x-gateway-cache"] == "hit"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nobody-configured-this", messages=HELLO)
    return gw.get("/metrics").text


def test_requests_by_route_target_key_status(scripted):
    """Each request is counted once with the route, the target that answered (cache for a
    hit), the key and the status; an unknown model has no route."""
    requests = samples(scripted, "gateway_requests_total")
    assert requests == {
        (("key", "team-a"), ("route", "main"), ("status", "200"), ("target", "up/m1")): 2.0,
        (("key", "team-a"), ("route", "smart"), ("status", "200"), ("target", "up/m1")): 1.0,
        (("key", "team-a"), ("route", "limited"), ("status", "200"), ("target", "up/m1")): 1.0,
        (("key", "team-a"), ("route", "limited"), ("status", "429"), ("target", "")): 1.0,
        (("key", "team-a"), ("route", "cached"), ("status", "200"), ("target", "up/m1")): 1.0,
        (("key", "team-a"), ("route", "cached"), ("status", "200"), ("target", "cache")): 1.0,
        (("key", "team-a"), ("route", ""), ("status", "404"), ("target", "")): 1.0,
    }


def test_latency_and_time_to_first_byte_histograms(scripted):
    """Every request is in the latency histogram; the answers' first bytes (the stream's too)
    in the time-to-first-byte one, with cumulative buckets ending at +Inf."""
    assert value(scripted, "gateway_request_duration_seconds_count") == 8
    assert value(scripted, "gateway_request_duration_seconds_count", route="main",
                 target="up/m1") == 2
    assert value(scripted, "gateway_time_to_first_byte_seconds_count", route="main") == 2
    assert value(scripted, "gateway_request_duration_seconds_bucket", route="main",
                 target="up/m1", le="+Inf") == 2
    assert value(scripted, "gateway_request_duration_seconds_sum", route="main") > 0


def test_tokens_cost_and_budget_spend(scripted):
    """Tokens and cost by route, target and key (a cache hit costs nothing); what a budget
    counted is its spend."""
    assert value(scripted, "gateway_tokens_total", route="main", direction="in") == 6
    assert value(scripted, "gateway_tokens_total", route="main", direction="out") == 8
    assert value(scripted, "gateway_tokens_total", target="cache") == 0
    assert value(scripted, "gateway_cost_usd_total", route="main", key="team-a") == 14
    assert value(scripted, "gateway_cost_usd_total") == 7 * 5  # 2 main, smart, limited, a miss
    assert value(scripted, "gateway_budget_spend_usd_total", budget="key:team-a") == pytest.approx(35)


def test_retries_fallbacks_rate_limits_and_cache(scripted):
    """The fallback's retry and move are counted on its route, the limit's refusal with its
    reason, the cache's miss and hit on theirs."""
    assert samples(scripted, "gateway_retries_total") == {(("route", "smart"),): 1.0}
    assert samples(scripted, "gateway_fallbacks_total") == {(("route", "smart"),): 1.0}
    assert samples(scripted, "gateway_rate_limited_total") == {
        (("reason", "rate_limit"), ("route", "limited")): 1.0}
    assert value(scripted, "gateway_cache_results_total", route="cached", result="hit") == 1
    assert value(scripted, "gateway_cache_results_total", route="cached", result="miss") == 1


def test_metrics_off_counts_nothing(gateway_app):
    """observability.metrics: false: /metrics answers 404 and no request is counted."""
    gw = gateway_app("version: 1\nproviders: {demo: {type: mock}}\n"
                     "routes: {m: {target: {provider: demo, model: x}}}\n"
                     "observability: {metrics: false}\n")
    assert gw.post("/v1/chat/completions", json={"model": "m", "messages": HELLO}).status_code == 200
    assert gw.get("/metrics").status_code == 404
    assert "metrics" not in {name for name, _ in gw.reloader.holder.current.request_finished}
