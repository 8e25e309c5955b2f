"""Breakers, health, balancing by load and latency, retry budgets, canary rollback and node
deadlines, at the node level with scripted providers."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from gateway.config.compiler import Runtime, compile_bytes
from gateway.errors import UpstreamError
from gateway.graph.nodes import DeadlineNode, FallbackNode, LoadBalanceNode
from gateway.graph.policies import RetryBudget, StatusMatcher
from gateway.state.retry_budget import RetryBudgetState
from gateway.state.target import OPEN

from .fakes import Delay, FakeProvider, breaker_policy, fail, ok, retry_policy, target
from .test_nodes import ctx_for


def lb(algorithm: str, *children, weights=None) -> LoadBalanceNode:
    weights = weights or tuple(1.0 for _ in children)
    return LoadBalanceNode("$.lb", algorithm, tuple(children), weights,
                           tuple(itertools.accumulate(weights)), itertools.count())


async def test_open_circuit_sends_nothing_upstream():
    """After failure_threshold failures the target is skipped without an upstream call."""
    provider = FakeProvider([fail(503), fail(503)])
    node = target(provider, breaker=breaker_policy(failure_threshold=2))
    for _ in range(2):
        with pytest.raises(UpstreamError):
            await node.handle(ctx_for())
    assert node.state.state == OPEN
    ctx = ctx_for()
    with pytest.raises(UpstreamError) as info:
        await node.handle(ctx)
    assert info.value.error_class == "circuit_open" and info.value.status == 503
    assert len(provider.calls) == 2
    assert ctx.attempts[-1].error_class == "circuit_open"


async def test_client_errors_do_not_open_the_circuit():
    """A 400 is the caller's mistake, not the upstream's: it does not count."""
    provider = FakeProvider([fail(400)] * 3)
    node = target(provider, breaker=breaker_policy(failure_threshold=2))
    for _ in range(3):
        with pytest.raises(UpstreamError):
            await node.handle(ctx_for())
    assert node.state.state == "closed"


async def test_fallback_skips_an_open_target_whatever_on_status_says():
    """A fallback moves past an open circuit even when on_status lists nothing."""
    first = target(FakeProvider([fail(503)]), "a", breaker=breaker_policy(failure_threshold=1))
    second = target(FakeProvider([ok("b1"), ok("b2")]), "b")
    with pytest.raises(UpstreamError):
        await first.handle(ctx_for())
    node = FallbackNode("$.f", (first, second), StatusMatcher.of(()))
    response = await node.handle(ctx_for())
    assert response.body == b"b1" and len(first.provider.calls) == 1


async def test_half_open_probe_closes_after_cooldown():
    """After the cooldown one probe goes through; its success closes the circuit."""
    provider = FakeProvider([fail(503), ok("back")])
    node = target(provider, breaker=breaker_policy(failure_threshold=1, cooldown=0.05))
    with pytest.raises(UpstreamError):
        await node.handle(ctx_for())
    time.sleep(0.06)
    assert (await node.handle(ctx_for())).body == b"back"
    assert node.state.state == "closed"


async def test_unhealthy_provider_is_skipped():
    """A provider failing its health checks is skipped like an open circuit."""
    provider = FakeProvider([])
    node = target(provider)
    node.health.healthy = False
    with pytest.raises(UpstreamError) as info:
        await node.handle(ctx_for())
    assert "failing health checks" in info.value.message and provider.calls == []


def test_loadbalance_leaves_out_open_targets_and_renormalises():
    """Weighted picks never land on a target whose circuit is open."""
    a = target(FakeProvider(), "a", breaker=breaker_policy(failure_threshold=1))
    b = target(FakeProvider(), "b")
    a.state.record(a.breaker, True, time.monotonic())
    node = lb("weighted", a, b, weights=(100.0, 1.0))
    ctx = ctx_for(seed=3)
    assert {node.pick(ctx).model for _ in range(200)} == {"b"}


def test_loadbalance_with_every_target_open_is_503():
    """With no target available the balancer fails with circuit_open (503)."""
    a = target(FakeProvider(), "a", breaker=breaker_policy(failure_threshold=1))
    a.state.record(a.breaker, True, time.monotonic())
    with pytest.raises(UpstreamError) as info:
        lb("round_robin", a).pick(ctx_for())
    assert info.value.error_class == "circuit_open" and info.value.status == 503


def test_least_busy_picks_fewest_in_flight():
    """least_busy chooses the target with the fewest requests in flight."""
    a, b, c = (target(FakeProvider(), m) for m in "abc")
    a.state.in_flight, b.state.in_flight, c.state.in_flight = 3, 1, 2
    node = lb("least_busy", a, b, c)
    assert node.pick(ctx_for()).model == "b"
    b.state.in_flight = 5
    assert node.pick(ctx_for()).model == "c"


async def test_least_busy_counts_requests_in_flight():
    """A request waiting on its upstream counts as in flight until it returns."""
    import asyncio

    slow = target(FakeProvider([Delay(0.1)]), "slow")
    fast = target(FakeProvider([ok(), ok()]), "fast")
    node = lb("least_busy", slow, fast)
    slow.state.in_flight = 0
    running = asyncio.create_task(slow.handle(ctx_for()))
    await asyncio.sleep(0.02)
    assert slow.state.in_flight == 1
    assert node.pick(ctx_for()).model == "fast"
    await running
    assert slow.state.in_flight == 0


def test_latency_prefers_the_fastest_and_explores():
    """latency picks the lowest EWMA most of the time and the others now and then."""
    a, b = target(FakeProvider(), "a"), target(FakeProvider(), "b")
    a.state.ewma_ms, b.state.ewma_ms = 50.0, 10.0
    node = lb("latency", a, b)
    ctx = ctx_for(seed=11)
    picks = [node.pick(ctx).model for _ in range(2000)]
    assert 0.9 <= picks.count("b") / 2000 <= 0.98
    assert picks.count("a") > 0


def test_latency_tries_unmeasured_targets_first():
    """A target with no latency sample yet is tried before the measured ones."""
    a, b = target(FakeProvider(), "a"), target(FakeProvider(), "b")
    a.state.ewma_ms = 1.0
    assert lb("latency", a, b).pick(ctx_for()).model == "b"


async def test_ewma_follows_latency():
    """Each answer updates the target's latency EWMA."""
    node = target(FakeProvider([Delay(0.05), ok()]))
    await node.handle(ctx_for())
    first = node.state.ewma_ms
    await node.handle(ctx_for())
    assert first >= 45 and node.state.ewma_ms < first


async def test_retry_budget_caps_retries():
    """Retries stop once they would exceed the route's budget."""
    budget = RetryBudget(ratio=0.0, window=60.0, min_retries=1, state=RetryBudgetState())
    provider = FakeProvider([fail(503), ok(), fail(503)])
    node = target(provider, retry=retry_policy(attempts=3))
    ctx = ctx_for()
    ctx.retry_budget = budget
    assert (await node.handle(ctx)).body == b"ok"  # the one allowed retry
    ctx = ctx_for()
    ctx.retry_budget = budget
    with pytest.raises(UpstreamError):
        await node.handle(ctx)  # no retry left: fails at once
    assert len(provider.calls) == 3 and budget.state.denied == 1


async def test_deadline_node_bounds_its_subtree():
    """A node timeout clips the timeouts its targets use, and restores the outer deadline."""
    provider = FakeProvider([ok()])
    node = DeadlineNode("$.t", 0.05, target(provider, retry=retry_policy(1)))
    ctx = ctx_for()
    await node.handle(ctx)
    sent = provider.calls[0].timeouts
    assert sent.total <= 0.05 and sent.first_byte <= 0.05
    assert ctx.deadline is None


async def test_deadline_node_keeps_a_tighter_outer_deadline():
    """An outer deadline shorter than the node's timeout wins."""
    provider = FakeProvider([ok()])
    node = DeadlineNode("$.t", 10.0, target(provider, retry=retry_policy(1)))
    outer = time.monotonic() + 0.02
    ctx = ctx_for(deadline=outer)
    await node.handle(ctx)
    assert provider.calls[0].timeouts.total <= 0.02 and ctx.deadline == outer


CANARY = {
    "version": 1,
    "providers": {"good": {"type": "mock"}, "bad": {"type": "mock", "error_rate": 1}},
    "routes": {"r": {"canary": {
        "percent": 50, "stable": {"target": {"provider": "good", "model": "s"}},
        "canary": {"target": {"provider": "bad", "model": "c", "retry": {"attempts": 1},
                              "circuit_breaker": {"enabled": False}}},
        "rollback": {"error_rate": 0.5, "min_requests": 5}}}},
}


async def test_canary_rolls_back_on_error_rate_and_stays_rolled_back():
    """Once the canary's error rate is breached after min_requests, all traffic goes to
    stable, and stays there across a reload that leaves the canary unchanged."""
    runtime = Runtime()
    graph = compile_bytes(json.dumps(CANARY).encode(), "c.yaml", runtime=runtime)
    node = graph.routes["r"].node
    ctx_seed = itertools.count()
    for _ in range(40):
        try:
            await node.handle(ctx_for(seed=next(ctx_seed)))
        except UpstreamError:
            pass
        if node.state.rolled_back:
            break
    assert node.state.rolled_back and node.share == 0.0
    assert node.state.arms["canary"].requests == 5
    for _ in range(20):
        assert (await node.handle(ctx_for(seed=next(ctx_seed)))).target == "good/s"
    again = compile_bytes(json.dumps(CANARY).encode(), "c.yaml", runtime=runtime)
    assert again.routes["r"].node.state is node.state
    changed = json.loads(json.dumps(CANARY))
    changed["routes"]["r"]["canary"]["percent"] = 20
    fresh = compile_bytes(json.dumps(changed).encode(), "c.yaml", runtime=runtime)
    assert not fresh.routes["r"].node.state.rolled_back


async def test_canary_counts_arms_and_tokens():
    """Each arm counts requests, errors, latency and tokens."""
    config = json.loads(json.dumps(CANARY))
    config["providers"]["bad"] = {"type": "mock"}
    node = compile_bytes(json.dumps(config).encode(), "c.yaml").routes["r"].node
    for seed in range(40):
        await node.handle(ctx_for(seed=seed))
    arms = {name: stats.snapshot() for name, stats in node.state.arms.items()}
    assert arms["stable"]["requests"] + arms["canary"]["requests"] == 40
    assert arms["canary"]["requests"] > 5 and arms["canary"]["errors"] == 0
    assert arms["stable"]["completion_tokens"] > 0
    assert arms["stable"]["latency_p50_ms"] is not None
