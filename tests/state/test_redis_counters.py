"""RedisCounters against a real, private redis-server: the Lua scripts, atomicity, outages."""

from __future__ import annotations

import asyncio
import math
import random
import socket
import time

import pytest

from gateway.state import redis_counters as rc
from gateway.state.counters import Limit, MemoryCounters, Verdict
from gateway.state.redis_counters import RedisCounters, StateUnavailable

from .. import redis_fixture
from ..redis_fixture import RedisServer, redis_server  # noqa: F401

T0 = 1_699_999_980.0  # a whole number of minutes: bucket boundaries at T0 + k*60
RPM = Limit("rl:key:k:requests:60", 3, 60, "requests", "key 'k'")
RPS = Limit("rl:key:k:requests:1", 2, 1, "requests", "key 'k'")
TPM = Limit("rl:key:k:tokens:60", 100, 60, "tokens", "key 'k'")
BUDGET = Limit("budget:key:k:2023-11", 1.0, 0.0, "usd", "key 'k'")
PARALLEL = Limit("rl:key:k:parallel:0", 2, 0.0, "parallel", "key 'k'")


class Events:
    """Stands in for the module's logger: records (level, event, fields)."""

    def __init__(self):
        self.seen: list[tuple[str, str, dict]] = []

    def __getattr__(self, level):
        return lambda event, **fields: self.seen.append((level, event, fields))

    def names(self) -> list[str]:
        return [event for _, event, _ in self.seen if event.startswith("state_")]


@pytest.fixture
def events(monkeypatch) -> Events:
    recorder = Events()
    monkeypatch.setattr(rc, "log", recorder)
    return recorder


@pytest.fixture
async def make(redis_server):  # noqa: F811
    """RedisCounters on the test's redis-server (closed afterwards)."""
    made: list[RedisCounters] = []

    def factory(**kwargs) -> RedisCounters:
        kwargs.setdefault("timeout", 2.0)  # generous: these tests are about semantics
        counters = RedisCounters(redis_server.url, **kwargs)
        made.append(counters)
        return counters

    yield factory
    for counters in made:
        await counters.aclose()


def read(redis_server, key: str) -> float | None:  # noqa: F811
    with redis_server.client() as client:
        value = client.get("gateway:" + key)
    return None if value is None else float(value)


def same(a: Verdict, b: Verdict) -> None:
    assert (a.allowed, a.blocked) == (b.allowed, b.blocked)
    assert a.retry_after == pytest.approx(b.retry_after) or a.retry_after == b.retry_after
    assert a.remaining.keys() == b.remaining.keys() and a.resets.keys() == b.resets.keys()
    for limit in a.remaining:
        assert a.remaining[limit] == pytest.approx(b.remaining[limit], abs=1e-9)
        assert a.resets[limit] == pytest.approx(b.resets[limit]) \
            or a.resets[limit] == b.resets[limit]


async def test_sliding_window_across_bucket_boundaries(make, redis_server):  # noqa: F811
    """Three requests late in one minute; in the next minute the previous bucket still counts
    in proportion to its overlap, and the retry-after is when enough of it has decayed."""
    c = make()
    for t in (50.0, 51.0, 52.0):
        assert (await c.reserve([(RPM, 1)], T0 + t)).allowed
    refused = await c.reserve([(RPM, 1)], T0 + 53.0)
    assert not refused.allowed and refused.blocked == RPM
    assert refused.retry_after == pytest.approx(7.0)  # the bucket rolls over at 60
    assert await c.total(RPM, T0 + 60.0) == pytest.approx(3.0)
    assert await c.total(RPM, T0 + 90.0) == pytest.approx(1.5)
    later = await c.reserve([(RPM, 1)], T0 + 70.0)  # 3 * 50/60 + 1 = 3.5 > 3
    assert not later.allowed and later.retry_after == pytest.approx(10.0)  # at 80: 3*40/60+1 = 3
    assert (await c.reserve([(RPM, 1)], T0 + 90.0)).allowed
    assert not (await c.reserve([(RPM, 1)], T0 + 90.5)).allowed
    assert read(redis_server, f"{RPM.key}:{int(T0 // 60)}") == 3.0
    assert read(redis_server, f"{RPM.key}:{int(T0 // 60) + 1}") == 1.0
    with redis_server.client() as client:
        assert 0 < client.ttl(f"gateway:{RPM.key}:{int(T0 // 60) + 1}") <= 121


async def test_verdicts_match_memory_counters(make):
    """A random sequence of reserves and adjusts gives the very same verdicts (allowed,
    blocked, retry-after, remaining, resets) as MemoryCounters."""
    redis_c, memory = make(), MemoryCounters()
    rng = random.Random(7)
    limits = [RPM, RPS, TPM, BUDGET, PARALLEL]
    now = T0 + 0.5
    outcomes = set()
    for _ in range(300):
        now += rng.choice([0.0, 0.25, 0.5, 1.0, 3.0, 17.5, 45.0])
        chosen = rng.sample(limits, rng.randint(1, 3))
        items = [(limit, rng.choice([0.25, 0.5, 1.0]) if limit.kind != "tokens"
                  else float(rng.randint(0, 40))) for limit in chosen]
        if rng.random() < 0.7:
            verdict = await redis_c.reserve(items, now)
            same(verdict, await memory.reserve(items, now))
            outcomes.add(verdict.allowed)
        else:
            items = [(limit, -amount if rng.random() < 0.5 else amount) for limit, amount in items]
            await redis_c.adjust(items, now)
            await memory.adjust(items, now)
        for limit in limits:
            assert await redis_c.total(limit, now) == pytest.approx(await memory.total(limit, now))
    assert outcomes == {True, False}


async def test_fixed_totals_ttls_and_clamp(make, redis_server):  # noqa: F811
    """A budget is a plain total (refused when it would pass the cap, retry-after infinite),
    settles with negative deltas but never below 0; TTLs: budgets 400 days, gauges and
    `total` budgets none."""
    c = make()
    assert (await c.reserve([(BUDGET, 0.4)], T0)).allowed
    assert (await c.reserve([(BUDGET, 0.4)], T0)).allowed
    refused = await c.reserve([(BUDGET, 0.4)], T0)
    assert not refused.allowed and refused.retry_after == math.inf
    assert refused.remaining[BUDGET] == pytest.approx(0.2)
    await c.adjust([(BUDGET, -5.0)], T0)
    assert read(redis_server, BUDGET.key) == 0.0 and await c.total(BUDGET, T0) == 0.0
    forever = Limit("budget:key:k:total", 1.0, 0.0, "usd")
    await c.reserve([(PARALLEL, 1), (forever, 0.5)], T0)
    with redis_server.client() as client:
        assert 399 * 86400 < client.ttl("gateway:" + BUDGET.key) <= 400 * 86400
        assert client.ttl("gateway:" + PARALLEL.key) == -1
        assert client.ttl("gateway:" + forever.key) == -1
    await c.adjust([(PARALLEL, -1)], T0)
    assert read(redis_server, PARALLEL.key) == 0.0


async def test_several_limits_all_or_nothing(make, redis_server):  # noqa: F811
    """When the last of several limits refuses, none of them is charged."""
    c = make()
    assert (await c.reserve([(BUDGET, 0.9)], T0)).allowed
    verdict = await c.reserve([(RPM, 1), (TPM, 50), (PARALLEL, 1), (BUDGET, 0.2)], T0 + 1)
    assert not verdict.allowed and verdict.blocked == BUDGET
    assert read(redis_server, f"{RPM.key}:{int(T0 // 60)}") is None
    assert read(redis_server, f"{TPM.key}:{int(T0 // 60)}") is None
    assert read(redis_server, PARALLEL.key) is None
    assert read(redis_server, BUDGET.key) == pytest.approx(0.9)
    ok = await c.reserve([(RPM, 1), (TPM, 50), (PARALLEL, 1), (BUDGET, 0.1)], T0 + 1)
    assert ok.allowed and ok.remaining[TPM] == pytest.approx(50) and ok.remaining[RPM] == 2
    assert ok.resets[RPM] == pytest.approx(59.0) and ok.resets[BUDGET] == 0.0


async def test_concurrent_reserves_allow_exactly_the_limit(make, redis_server):  # noqa: F811
    """200 concurrent reserves from two counters (two "replicas") against a limit of 50:
    exactly 50 are allowed, and Redis holds 50."""
    limit = Limit("rl:route:r:requests:60", 50, 60, "requests")
    a, b = make(share=2), make(share=2)
    now = T0 + 1.0
    verdicts = await asyncio.gather(*(
        (a if i % 2 else b).reserve([(limit, 1)], now) for i in range(200)))
    assert sum(v.allowed for v in verdicts) == 50
    assert read(redis_server, f"{limit.key}:{int(now // 60)}") == 50.0
    assert a.healthy and b.healthy


async def test_script_cache_flushed_falls_back_to_eval(make, redis_server):  # noqa: F811
    """After SCRIPT FLUSH the EVALSHA misses and the script is sent again."""
    c = make()
    assert (await c.reserve([(RPM, 1)], T0)).allowed
    with redis_server.client() as client:
        client.script_flush()
    assert (await c.reserve([(RPM, 1)], T0)).allowed
    assert read(redis_server, f"{RPM.key}:{int(T0 // 60)}") == 2.0 and c.healthy


async def test_outage_local_mode_divides_and_reconciles_once(  # noqa: F811
        make, redis_server, events, monkeypatch):
    """Redis killed: reservations are served locally with the limit divided by the share (and
    seeded with the last usage read); Redis back: the local spend is added exactly once."""
    monkeypatch.setattr(rc, "RETRY_EVERY", 0.2)
    limit = Limit("rl:route:r:requests:60", 10, 60, "requests")
    c = make(share=2)
    now = T0 + 1.0
    for _ in range(4):
        assert (await c.reserve([(limit, 1), (BUDGET, 0.1)], now)).allowed
    redis_server.kill()
    local = [await c.reserve([(limit, 1), (BUDGET, 0.1)], now) for _ in range(6)]
    # cap 10/2 = 5, seeded with 4/2 = 2 already used: 3 more
    assert [v.allowed for v in local] == [True] * 3 + [False] * 3
    assert local[-1].blocked == limit and local[-1].retry_after == pytest.approx(59.0)
    assert not c.healthy and c.status()["mode"] == "local" and c.status()["pending_deltas"] == 2
    await c.adjust([(BUDGET, -0.05)], now)  # settling goes local too
    assert events.names() == ["state_outage"]
    redis_server.start()  # empty: no persistence
    await asyncio.sleep(0.25)
    assert (await c.reserve([(limit, 1)], now)).allowed  # the probe: reconcile, then reserve
    assert c.healthy and c.status()["pending_deltas"] == 0
    assert events.names() == ["state_outage", "state_reconciled", "state_recovered"]
    assert read(redis_server, f"{limit.key}:{int(now // 60)}") == 3.0 + 1.0
    assert read(redis_server, BUDGET.key) == pytest.approx(0.3 - 0.05)
    for _ in range(3):
        await c.reserve([(RPM, 1)], now)
    assert read(redis_server, f"{limit.key}:{int(now // 60)}") == 4.0  # not added twice


async def test_lost_answer_of_a_reconciliation_is_not_counted_twice(  # noqa: F811
        make, redis_server, events, monkeypatch):
    """A batch that Redis applied but whose answer was lost is sent again with the same id,
    and Redis ignores it the second time."""
    monkeypatch.setattr(rc, "RETRY_EVERY", 0.0)
    c = make()
    redis_server.kill()
    assert (await c.reserve([(BUDGET, 0.25)], T0)).allowed  # local
    redis_server.start()
    real = c._script
    lost = []

    async def answer_lost(redis, source, keys, args):
        result = await real(redis, source, keys, args)
        if keys[0].startswith("gateway:reconciled:") and not lost:
            lost.append(keys[0])
            raise TimeoutError("answer lost")
        return result

    monkeypatch.setattr(c, "_script", answer_lost)
    await c.adjust([(PARALLEL, 1)], T0)  # reconciliation applied, answer lost: still down
    assert lost and not c.healthy and read(redis_server, BUDGET.key) == 0.25
    await c.adjust([(PARALLEL, 1)], T0)  # same batch again (ignored), then the adjust
    assert c.healthy
    assert read(redis_server, BUDGET.key) == 0.25
    assert read(redis_server, PARALLEL.key) == 2.0  # the first adjust was kept locally, then sent


async def test_closed_mode_raises_but_keeps_settling(make, redis_server, monkeypatch):  # noqa: F811
    """state_outage: closed — reserve raises StateUnavailable (a 503); alert markers and
    adjustments are still accepted and reconciled when Redis is back."""
    monkeypatch.setattr(rc, "RETRY_EVERY", 0.1)
    c = make(outage="closed", share=3)
    redis_server.kill()
    with pytest.raises(StateUnavailable) as caught:
        await c.reserve([(RPM, 1)], T0)
    assert caught.value.status == 503 and caught.value.code == "state_unavailable"
    assert caught.value.headers["Retry-After"] == "1"
    marker = Limit(f"alert:{BUDGET.key}:0.8", 1.0, 0.0, "alert")
    assert (await c.reserve([(marker, 1.0)], T0)).allowed  # once, locally
    assert not (await c.reserve([(marker, 1.0)], T0)).allowed
    await c.adjust([(BUDGET, 0.5)], T0)
    assert c.status() | {"down_since": None} == {
        "backend": "redis", "healthy": False, "mode": "closed", "share": 3, "down_since": None,
        "pending_deltas": 2, "outages": 1}
    redis_server.start()
    await asyncio.sleep(0.15)
    await c.refresh()
    assert c.healthy and read(redis_server, BUDGET.key) == 0.5
    assert read(redis_server, marker.key) == 1
    assert (await c.reserve([(RPM, 1)], T0)).allowed


async def test_a_hanging_redis_costs_one_timeout_then_is_retried_once_a_second(events):
    """A server that accepts connections but never answers: the first call waits for the
    socket timeout (50 ms by default), the next ones go local at once; one outage logged."""
    with socket.socket() as hang:
        hang.bind(("127.0.0.1", 0))
        hang.listen(64)
        port = hang.getsockname()[1]
        c = RedisCounters(f"redis://127.0.0.1:{port}/0")
        try:
            started = time.monotonic()
            assert (await c.reserve([(RPM, 1)], T0)).allowed
            first = time.monotonic() - started
            started = time.monotonic()
            for _ in range(50):
                await c.reserve([(TPM, 1)], T0)
            rest = time.monotonic() - started
        finally:
            await c.aclose()
    assert 0.04 <= first < 1.0 and rest < 0.2
    assert events.names().count("state_outage") == 1 and "state_pending_lost" in events.names()
    assert "Timeout" in c._error


async def test_socket_timeout_in_the_url_wins(redis_server):  # noqa: F811
    """`?socket_timeout=` in the URL sets the timeout."""
    c = RedisCounters(redis_server.url + "?socket_timeout=0.5")
    try:
        assert c.timeout == 0.5 and (await c.reserve([(RPM, 1)], T0)).allowed
    finally:
        await c.aclose()


def test_password_redacted():
    """Logged URLs never show the password."""
    assert rc.redact("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert rc.redact("redis://u:s3cret@h/1") == "redis://u:***@h/1"
    assert rc.redact("redis://h:6379/0") == "redis://h:6379/0"


def test_missing_redis_server_fails_the_tests(tmp_path, monkeypatch):
    """Without the redis-server binary the Redis tests fail with a clear message (no skip)."""
    monkeypatch.setattr(redis_fixture.shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="redis-server is not installed"):
        RedisServer(tmp_path)
