"""Two real `gateway serve` processes sharing one real redis-server: one rate limit, one budget,
and what happens when Redis dies and comes back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import httpx

from .. import loopback
from ..redis_fixture import RedisServer, redis_server  # noqa: F401

RAW = "replica-test-key-0123456789"
DIGEST = hashlib.sha256(RAW.encode()).hexdigest()
AUTH = {"Authorization": f"Bearer {RAW}"}


def config(url: str, data_dir, *, outage: str = "local", rpm: int = 20) -> str:
    # A generous socket timeout: on shared CI cores a 50 ms one could trip and turn an exact
    # count into a local-mode estimate. The outages below are real kills, not slowness.
    return f"""
version: 1
server:
  state: "{url}?socket_timeout=0.5"
  state_outage: {outage}
  replicas: 2
  data_dir: {data_dir}
providers:
  demo: {{type: mock}}
pricing:
  "demo/priced": {{input: 1000, output: 1000}}    # $0.001 a token
routes:
  chat: {{target: {{provider: demo, model: m}}}}
  limited:
    limits: {{requests_per_minute: {rpm}}}
    target: {{provider: demo, model: m}}
  priced: {{target: {{provider: demo, model: priced}}}}
keys:
  team:
    key_sha256: {DIGEST}
    budget: {{usd: 0.05, period: monthly}}
"""


def pair(gateway_factory, redis: RedisServer, tmp_path, **kwargs):
    """Two gateways (two config files, two data dirs) on the same Redis."""
    return [gateway_factory(config(redis.url, tmp_path / f"data-{n}", **kwargs), name=f"{n}.yaml")
            for n in ("a", "b")]


def post(gw, model: str, **extra) -> httpx.Response:
    return loopback.post(gw.base_url + "/v1/chat/completions", timeout=10, headers=AUTH,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}],
                            **extra})


def clear_of_minute_boundary(margin: float = 5.0) -> None:
    """Sliding windows give back part of the previous minute after a boundary: start where
    the test ends before the next one (waits at most `margin` seconds)."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.2)


def redis_sum(redis: RedisServer, pattern: str) -> float:
    with redis.client() as client:
        return sum(float(client.get(k) or 0) for k in client.keys(pattern))


def readyz(gw) -> httpx.Response:
    return loopback.get(gw.base_url + "/readyz", timeout=5)


def test_two_replicas_enforce_one_rate_limit(gateway_factory, redis_server, tmp_path):  # noqa: F811
    """60 requests alternating between two gateways against requests_per_minute: 20:
    exactly 20 succeed in total, the rest get 429 with Retry-After."""
    a, b = pair(gateway_factory, redis_server, tmp_path)
    clear_of_minute_boundary()
    answers = [post(a if i % 2 == 0 else b, "limited") for i in range(60)]
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == 20 and statuses.count(429) == 40, statuses
    assert statuses[:20] == [200] * 20  # 10 from each
    for refused in answers[20:]:
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["x-ratelimit-limit-requests"] == "20"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert answers[0].headers["x-ratelimit-remaining-requests"] == "19"
    assert answers[1].headers["x-ratelimit-remaining-requests"] == "18"  # b sees a's request
    assert redis_sum(redis_server, "gateway:rl:route:limited:requests:60:*") == 20
    for gw in (a, b):
        state = readyz(gw).json()["state"]
        assert state["backend"] == "redis" and state["healthy"] and state["mode"] == "local"
        metrics = loopback.get(gw.base_url + "/metrics", timeout=5).text
        assert 'gateway_state_backend_up{backend="redis"} 1.0' in metrics


def test_two_replicas_share_one_budget(gateway_factory, redis_server, tmp_path):  # noqa: F811
    """Concurrent requests to both gateways against one key's budget: the sum of what both
    spent never exceeds the budget by more than one request's cost."""
    a, b = pair(gateway_factory, redis_server, tmp_path)

    async def main():
        async with httpx.AsyncClient(timeout=20, headers=AUTH) as client:
            body = {"model": "priced", "max_tokens": 5,
                    "messages": [{"role": "user", "content": "hi"}]}
            return await asyncio.gather(*(
                client.post((a if i % 2 else b).base_url + "/v1/chat/completions", json=body)
                for i in range(40)))

    answers = asyncio.run(main())
    ok = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    assert len(ok) + len(refused) == 40 and ok and refused
    assert {r.json()["error"]["code"] for r in refused} == {"budget_exceeded"}
    costs = [r.json()["usage"]["total_tokens"] * 0.001 for r in ok]
    refusals = 0
    for i in range(30):  # then one at a time, alternating, until both refuse in a row
        answer = post(a if i % 2 else b, "priced", max_tokens=5)
        if answer.status_code == 200:
            costs.append(answer.json()["usage"]["total_tokens"] * 0.001)
            refusals = 0
        else:
            assert answer.json()["error"]["code"] == "budget_exceeded"
            refusals += 1
            if refusals == 2:
                break
    assert refusals == 2
    assert sum(costs) <= 0.05 + max(costs) + 1e-9
    in_redis = redis_sum(redis_server, "gateway:budget:key:team:*")
    assert abs(in_redis - sum(costs)) < 1e-6  # every reservation settled to the real cost


def test_redis_killed_both_keep_serving_then_resynchronise(  # noqa: F811
        gateway_factory, redis_server, tmp_path):
    """Redis dies: both gateways keep answering, each within its share of the limit (20/2);
    /readyz and /metrics say so. Redis back (empty): the spend of the outage is added to it
    once, and the shared limit goes on from there."""
    a, b = pair(gateway_factory, redis_server, tmp_path)
    clear_of_minute_boundary(margin=25.0)
    assert [post(gw, "limited").status_code for gw in (a, b, a, b)] == [200] * 4
    redis_server.kill()
    during = {a: [], b: []}
    for i in range(30):
        gw = a if i % 2 == 0 else b
        during[gw].append(post(gw, "limited").status_code)
        assert post(gw, "chat").status_code == 200
    for gw in (a, b):
        assert set(during[gw]) <= {200, 429}
        assert 5 <= during[gw].count(200) <= 10  # its share: 20 / 2 replicas
        ready = readyz(gw)
        assert ready.status_code == 200
        assert ready.json()["state"] | {"down_since": None} == {
            "backend": "redis", "healthy": False, "mode": "local", "share": 2,
            "down_since": None, "pending_deltas": ready.json()["state"]["pending_deltas"] or -1, "outages": 1}
        metrics = loopback.get(gw.base_url + "/metrics", timeout=5).text
        assert 'gateway_state_backend_up{backend="redis"} 0.0' in metrics
    spent_during = during[a].count(200) + during[b].count(200)
    assert 4 + spent_during <= 20  # the fleet stayed within the limit
    redis_server.start()  # a fresh, empty Redis on the same port
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(readyz(gw).json()["state"]["healthy"] for gw in (a, b)):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"not resynchronised: {[readyz(gw).json() for gw in (a, b)]}")
    assert redis_sum(redis_server, "gateway:rl:route:limited:requests:60:*") == spent_during
    after = [post(a if i % 2 == 0 else b, "limited").status_code for i in range(24)]
    assert after.count(200) == 20 - spent_during  # one limit again, counted from Redis
    assert redis_sum(redis_server, "gateway:rl:route:limited:requests:60:*") == 20
    time.sleep(0.3)
    for gw in (a, b):
        events = [json.loads(line).get("event") for line in gw.log().splitlines()
                  if line.startswith("{")]
        assert events.count("state_outage") == 1 and events.count("state_recovered") == 1


def test_closed_mode_answers_503_for_limited_requests(  # noqa: F811
        gateway_factory, redis_server, tmp_path):
    """state_outage: closed — while Redis is down a limited request gets 503
    state_unavailable and /readyz is 503; Redis back: served again."""
    gw = gateway_factory(config(redis_server.url, tmp_path / "data", outage="closed"))
    assert post(gw, "limited").status_code == 200
    redis_server.kill()
    refused = post(gw, "limited")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "state_unavailable"
    assert refused.headers["Retry-After"] == "1"
    ready = readyz(gw)
    assert ready.status_code == 503 and ready.json()["state"]["mode"] == "closed"
    redis_server.start()
    deadline = time.monotonic() + 10
    while readyz(gw).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert readyz(gw).json()["state"]["healthy"]
    assert post(gw, "limited").status_code == 200
