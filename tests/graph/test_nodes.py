"""Strategy nodes against a scripted fake provider and compiled configs."""

from __future__ import annotations

import itertools
import json
import random
import time
from types import MappingProxyType

import pytest

from gateway.config.compiler import compile_bytes
from gateway.errors import GatewayError, UpstreamError
from gateway.graph.context import RequestContext
from gateway.graph.nodes import (
    CanaryNode,
    TargetNode,
    ConditionalNode,
    FallbackNode,
    LoadBalanceNode,
    RouteRefNode,
    deep_merge,
)
from gateway.graph.policies import StatusMatcher
from gateway.providers.base import Timeouts

from .fakes import Delay, FakeProvider, fail, ok, retry_policy, target, timeout_error


def ctx_for(body: dict | None = None, *, route: str = "r", metadata: dict | None = None,
            key_name: str | None = None, seed: int | None = 0, deadline: float | None = None,
            stream: bool = False) -> RequestContext:
    return RequestContext(
        endpoint="chat",
        body={"model": route, "messages": [{"role": "user", "content": "hi"}]} if body is None else body,
        route=route,
        metadata=metadata or {},
        key_name=key_name,
        rng=random.Random(seed),
        deadline=deadline,
        stream=stream,
    )


def compile_routes(config: dict):
    """Compile a config given as a dict (JSON is YAML) and return its routes."""
    config = {"version": 1, "providers": {"demo": {"type": "mock"}}, **config}
    return compile_bytes(json.dumps(config).encode(), "g.yaml", env={}).routes


def demo(model: str) -> dict:
    return {"target": {"provider": "demo", "model": model}}


# -- target ---------------------------------------------------------------------------------


async def test_target_success_returns_response_and_records_attempt():
    """A successful target returns the provider's answer labelled provider/model."""
    provider = FakeProvider([ok("hello")])
    ctx = ctx_for()
    response = await target(provider, "gpt-x").handle(ctx)
    assert response.body == b"hello"
    assert response.target == "fake/gpt-x"
    assert [(a.target, a.status, a.error_class) for a in ctx.attempts] == [("fake/gpt-x", 200, None)]


async def test_target_sends_its_model_and_request_shape():
    """The body sent upstream carries the target's model; endpoint, stream and timeouts pass on."""
    provider = FakeProvider([ok()])
    timeouts = Timeouts(connect=1.0, first_byte=2.0, idle=3.0, total=4.0)
    ctx = ctx_for({"model": "public-name", "messages": []}, stream=True)
    await target(provider, "upstream-model", timeouts=timeouts).handle(ctx)
    call = provider.calls[0]
    assert call.model == "upstream-model"
    assert call.body == {"model": "upstream-model", "messages": []}
    assert (call.endpoint, call.stream, call.timeouts) == ("chat", True, timeouts)
    assert ctx.body["model"] == "public-name"


async def test_target_records_latency():
    """Each attempt records how long the call took."""
    provider = FakeProvider([Delay(0.03)])
    ctx = ctx_for()
    await target(provider).handle(ctx)
    assert ctx.attempts[0].latency_ms >= 30


async def test_retry_on_503_then_success():
    """A 503 is retried; the second attempt's answer is returned; both attempts are recorded."""
    provider = FakeProvider([fail(503), ok("second")])
    ctx = ctx_for()
    response = await target(provider, retry=retry_policy(attempts=2)).handle(ctx)
    assert response.body == b"second"
    assert len(provider.calls) == 2
    assert [(a.status, a.error_class) for a in ctx.attempts] == [(503, "server"), (200, None)]
    assert all(a.target == "fake/m" for a in ctx.attempts)


async def test_retry_exhausted_raises_last_error():
    """When every attempt fails, the last error is raised after exactly `attempts` calls."""
    provider = FakeProvider([fail(500), fail(502), fail(503)])
    ctx = ctx_for()
    with pytest.raises(UpstreamError) as info:
        await target(provider, retry=retry_policy(attempts=3)).handle(ctx)
    assert info.value.status == 503
    assert info.value.target == "fake/m"
    assert len(provider.calls) == 3
    assert [a.status for a in ctx.attempts] == [500, 502, 503]


async def test_retry_resends_the_same_body():
    """A retry sends the same body as the first attempt."""
    provider = FakeProvider([fail(429), ok()])
    await target(provider, retry=retry_policy(attempts=2)).handle(ctx_for({"x": 1}))
    assert provider.calls[0].body == provider.calls[1].body == {"x": 1, "model": "m"}


async def test_retry_honours_retry_after():
    """Retry-After (0.05 s) is waited before the retry, instead of the configured backoff."""
    provider = FakeProvider([fail(429, retry_after=0.05), ok()])
    policy = retry_policy(attempts=2, base=5.0, max=1.0)
    started = time.monotonic()
    await target(provider, retry=policy).handle(ctx_for())
    elapsed = time.monotonic() - started
    assert len(provider.calls) == 2
    assert 0.05 <= elapsed < 0.5


async def test_retry_after_longer_than_max_means_no_retry():
    """A Retry-After above retry.max is not waited for and not retried."""
    provider = FakeProvider([fail(429, retry_after=0.05), ok()])
    policy = retry_policy(attempts=3, max=0.01)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        await target(provider, retry=policy).handle(ctx_for())
    assert time.monotonic() - started < 0.05
    assert info.value.status == 429
    assert len(provider.calls) == 1


async def test_retry_after_ignored_when_not_respected():
    """With respect_retry_after false, the backoff is used even if Retry-After is long."""
    provider = FakeProvider([fail(429, retry_after=30.0), ok()])
    policy = retry_policy(attempts=2, base=0.0, max=1.0, respect_retry_after=False)
    started = time.monotonic()
    await target(provider, retry=policy).handle(ctx_for())
    assert len(provider.calls) == 2
    assert time.monotonic() - started < 0.2


async def test_no_retry_on_400():
    """A 400 client error is raised as it is after one call."""
    provider = FakeProvider([fail(400), ok()])
    ctx = ctx_for()
    with pytest.raises(UpstreamError) as info:
        await target(provider, retry=retry_policy(attempts=5)).handle(ctx)
    assert (info.value.status, info.value.error_class) == (400, "client")
    assert len(provider.calls) == 1
    assert [(a.status, a.error_class) for a in ctx.attempts] == [(400, "client")]


async def test_no_retry_for_status_not_listed():
    """A 500 is not retried when on_status lists only 503."""
    provider = FakeProvider([fail(500), ok()])
    with pytest.raises(UpstreamError):
        await target(provider, retry=retry_policy(attempts=3, on=[503])).handle(ctx_for())
    assert len(provider.calls) == 1


async def test_timeout_retried_only_by_class():
    """A timeout (no upstream status) is retried for 'timeout', not for a listed 408."""
    by_status = FakeProvider([timeout_error(), ok()])
    with pytest.raises(UpstreamError):
        await target(by_status, retry=retry_policy(attempts=2, on=[408])).handle(ctx_for())
    by_class = FakeProvider([timeout_error(), ok()])
    await target(by_class, retry=retry_policy(attempts=2, on=["timeout"])).handle(ctx_for())
    assert (len(by_status.calls), len(by_class.calls)) == (1, 2)


async def test_single_attempt_never_retries():
    """attempts: 1 means one call, even for retryable failures."""
    provider = FakeProvider([fail(503), ok()])
    with pytest.raises(UpstreamError):
        await target(provider, retry=retry_policy(attempts=1)).handle(ctx_for())
    assert len(provider.calls) == 1


# -- retry policy delays ---------------------------------------------------------------------


def test_exponential_backoff_doubles_up_to_max():
    """Exponential backoff without jitter: base, 2*base, 4*base ... capped at max."""
    policy = retry_policy(backoff="exponential", base=0.5, max=3.0)
    rng = random.Random(0)
    assert [policy.delay(n, None, rng) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_constant_backoff():
    """Constant backoff waits base every time."""
    policy = retry_policy(backoff="constant", base=0.25, max=3.0)
    assert [policy.delay(n, None, random.Random(0)) for n in (1, 4)] == [0.25, 0.25]


def test_jitter_stays_within_ceiling():
    """Full jitter picks a delay between 0 and the computed ceiling."""
    policy = retry_policy(backoff="exponential", base=1.0, max=8.0, jitter=True)
    rng = random.Random(1)
    delays = [policy.delay(3, None, rng) for _ in range(200)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert max(delays) > 2.0 and min(delays) < 2.0


# -- deadlines ------------------------------------------------------------------------------


async def test_deadline_already_passed_is_a_timeout():
    """A request whose deadline passed fails with class timeout before calling upstream."""
    provider = FakeProvider([ok()])
    ctx = ctx_for(deadline=time.monotonic() - 1)
    with pytest.raises(UpstreamError) as info:
        await target(provider).handle(ctx)
    assert info.value.error_class == "timeout"
    assert info.value.status == 408
    assert info.value.from_upstream is False
    assert info.value.target == "fake/m"
    assert provider.calls == []


async def test_deadline_clips_attempt_timeouts():
    """An attempt never gets more time than what is left of the request deadline."""
    provider = FakeProvider([ok()])
    ctx = ctx_for(deadline=time.monotonic() + 0.5)
    await target(provider).handle(ctx)
    sent = provider.calls[0].timeouts
    assert sent.total <= 0.5
    assert sent.first_byte <= 0.5 and sent.connect <= 0.5


async def test_no_retry_when_backoff_outlasts_deadline():
    """A retry whose wait would end after the deadline is not attempted."""
    provider = FakeProvider([fail(503), ok()])
    ctx = ctx_for(deadline=time.monotonic() + 0.1)
    policy = retry_policy(attempts=3, backoff="constant", base=1.0)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        await target(provider, retry=policy).handle(ctx)
    assert info.value.status == 503
    assert len(provider.calls) == 1
    assert time.monotonic() - started < 0.1


async def test_fallback_stops_when_deadline_passed():
    """Once the deadline has passed, a fallback does not try further targets."""
    slow = FakeProvider([Delay(0.06, fail(503))], name="slow")
    spare = FakeProvider([ok()], name="spare")
    node = FallbackNode("$.f", (target(slow), target(spare)), StatusMatcher.of([503]))
    with pytest.raises(UpstreamError) as info:
        await node.handle(ctx_for(deadline=time.monotonic() + 0.03))
    assert info.value.status == 503
    assert spare.calls == []


# -- fallback -------------------------------------------------------------------------------


async def test_fallback_moves_on_after_listed_failure():
    """After a listed failure the next target answers; both attempts are recorded in order."""
    first, second = FakeProvider([fail(503)], name="a"), FakeProvider([ok("b")], name="b")
    node = FallbackNode("$.f", (target(first), target(second)), StatusMatcher.of([503]))
    ctx = ctx_for()
    response = await node.handle(ctx)
    assert response.target == "b/m"
    assert [(a.target, a.status) for a in ctx.attempts] == [("a/m", 503), ("b/m", 200)]


async def test_fallback_tries_targets_in_order_and_raises_last():
    """When every target fails, each was tried once in order and the last error is raised."""
    providers = [FakeProvider([fail(s)], name=n) for n, s in (("a", 500), ("b", 429), ("c", 502))]
    node = FallbackNode("$.f", tuple(target(p) for p in providers), StatusMatcher.of([429, 500, 502]))
    ctx = ctx_for()
    with pytest.raises(UpstreamError) as info:
        await node.handle(ctx)
    assert (info.value.status, info.value.target) == (502, "c/m")
    assert [a.target for a in ctx.attempts] == ["a/m", "b/m", "c/m"]


async def test_fallback_stops_at_first_success():
    """Targets after a successful one are not called."""
    a, b = FakeProvider([ok("a")], name="a"), FakeProvider([ok("b")], name="b")
    node = FallbackNode("$.f", (target(a), target(b)), StatusMatcher.of([503]))
    response = await node.handle(ctx_for())
    assert response.body == b"a" and b.calls == []


async def test_fallback_does_not_move_on_for_400():
    """A 400 is the client's fault: it is raised, the next target is not tried."""
    first, second = FakeProvider([fail(400)], name="a"), FakeProvider([ok()], name="b")
    node = FallbackNode("$.f", (target(first), target(second)), StatusMatcher.of([429, 500, 503]))
    with pytest.raises(UpstreamError) as info:
        await node.handle(ctx_for())
    assert info.value.status == 400
    assert second.calls == []


async def test_fallback_moves_on_for_listed_class_context_window():
    """A 400 of class context_window moves on when context_window is listed."""
    first = FakeProvider([fail(400, "context_window")], name="small")
    second = FakeProvider([ok()], name="big")
    node = FallbackNode("$.f", (target(first), target(second)), StatusMatcher.of([503, "context_window"]))
    response = await node.handle(ctx_for())
    assert response.target == "big/m"


async def test_fallback_not_for_unlisted_class():
    """context_window is not fallen back on when only statuses are listed."""
    first = FakeProvider([fail(400, "context_window")], name="small")
    second = FakeProvider([ok()], name="big")
    node = FallbackNode("$.f", (target(first), target(second)), StatusMatcher.of([429, 500]))
    with pytest.raises(UpstreamError) as info:
        await node.handle(ctx_for())
    assert info.value.error_class == "context_window"
    assert second.calls == []


async def test_fallback_timeout_matches_class_not_status():
    """A timeout moves on for 'timeout' in on_status; a listed 408 alone does not match it."""
    a1, b1 = FakeProvider([timeout_error()], name="a"), FakeProvider([ok()], name="b")
    await FallbackNode("$.f", (target(a1), target(b1)), StatusMatcher.of(["timeout"])).handle(ctx_for())
    a2, b2 = FakeProvider([timeout_error()], name="a"), FakeProvider([ok()], name="b")
    with pytest.raises(UpstreamError):
        await FallbackNode("$.f", (target(a2), target(b2)), StatusMatcher.of([408])).handle(ctx_for())
    assert (len(b1.calls), len(b2.calls)) == (1, 0)


async def test_fallback_after_retries_of_first_target():
    """A target retries on its own before the fallback moves on."""
    first = FakeProvider([fail(503), fail(503)], name="a")
    second = FakeProvider([ok()], name="b")
    node = FallbackNode(
        "$.f", (target(first, retry=retry_policy(attempts=2)), target(second)), StatusMatcher.of([503])
    )
    ctx = ctx_for()
    await node.handle(ctx)
    assert [a.target for a in ctx.attempts] == ["a/m", "a/m", "b/m"]


async def test_fallback_passes_gateway_errors_up():
    """A GatewayError from a child (no rule matched) is not an upstream failure to fall back on."""
    nomatch = ConditionalNode("$.c", "r", (), None)
    spare = FakeProvider([ok()])
    node = FallbackNode("$.f", (nomatch, target(spare)), StatusMatcher.of([400, 503]))
    with pytest.raises(GatewayError):
        await node.handle(ctx_for())
    assert spare.calls == []


async def test_compiled_fallback_with_mock_provider():
    """A compiled fallback over the mock provider answers from its first target."""
    routes = compile_routes({"routes": {"f": {"fallback": {"targets": [demo("one"), demo("two")]}}}})
    response = await routes["f"].node.handle(ctx_for(route="f"))
    assert response.target == "demo/one"
    assert json.loads(response.body)["model"] == "one"


async def test_route_ref_delegates():
    """A route reference answers with the referenced route's node."""
    provider = FakeProvider([ok("x")])
    node = RouteRefNode("$.r", "other", target(provider, "mm"))
    response = await node.handle(ctx_for())
    assert response.target == "fake/mm" and provider.models == ["mm"]


# -- loadbalance ----------------------------------------------------------------------------


def weighted_lb() -> LoadBalanceNode:
    routes = compile_routes({"routes": {"lb": {"loadbalance": {"targets": [
        {"weight": 3, **demo("heavy")},
        {"weight": 1, **demo("light")},
    ]}}}})
    return routes["lb"].node


def test_weighted_distribution_within_bounds():
    """Weights 3:1 over 4000 seeded picks give the first target 75% +- 3%."""
    node = weighted_lb()
    ctx = ctx_for(seed=12345)
    picks = [node.pick(ctx).model for _ in range(4000)]
    share = picks.count("heavy") / len(picks)
    assert abs(share - 0.75) <= 0.03
    assert set(picks) == {"heavy", "light"}


def test_weighted_picks_are_reproducible_with_seed():
    """The same seed gives the same sequence of picks."""
    node = weighted_lb()
    ctx1, ctx2 = ctx_for(seed=99), ctx_for(seed=99)
    assert [node.pick(ctx1).model for _ in range(50)] == [node.pick(ctx2).model for _ in range(50)]


def test_weighted_three_way_distribution():
    """Weights 1:2:5 are honoured for each child."""
    routes = compile_routes({"routes": {"lb": {"loadbalance": {"targets": [
        {"weight": 1, **demo("a")}, {"weight": 2, **demo("b")}, {"weight": 5, **demo("c")},
    ]}}}})
    node, ctx = routes["lb"].node, ctx_for(seed=3)
    picks = [node.pick(ctx).model for _ in range(8000)]
    for model, expected in (("a", 1 / 8), ("b", 2 / 8), ("c", 5 / 8)):
        assert abs(picks.count(model) / 8000 - expected) <= 0.03


@pytest.mark.parametrize("algorithm", ["weighted", "round_robin", "least_busy", "latency"])
def test_zero_weight_child_gets_no_traffic(algorithm):
    """A child of weight 0 is drained: no algorithm ever picks it."""
    routes = compile_routes({"routes": {"lb": {"loadbalance": {"algorithm": algorithm, "targets": [
        {"weight": 0, **demo("drained")}, {"weight": 1, **demo("a")}, {"weight": 2, **demo("b")},
    ]}}}})
    node, ctx = routes["lb"].node, ctx_for(seed=7)
    picks = {node.pick(ctx).model for _ in range(500)}
    assert "drained" not in picks and picks


def test_loadbalance_leaves_out_a_child_route_whose_targets_are_open():
    """A child that is a route reference counts as open when every target behind it is."""
    routes = compile_routes({"routes": {
        "next": {"fallback": {"targets": [demo("n1"), demo("n2")]}},
        "lb": {"loadbalance": {"algorithm": "round_robin",
                               "targets": [{"route": "next"}, demo("direct")]}},
    }})
    for child in routes["next"].node.nodes:
        open_circuit(child)
    node, ctx = routes["lb"].node, ctx_for(seed=1)
    assert {node.pick(ctx).label for _ in range(20)} == {"demo/direct"}


async def test_loadbalance_calls_only_the_picked_child():
    """handle() sends to the picked child only."""
    heavy, light = FakeProvider([ok()], name="heavy"), FakeProvider([ok()], name="light")
    node = LoadBalanceNode("$.lb", "weighted", (target(heavy), target(light)), (1.0, 1e-9),
                           (1.0, 1.0 + 1e-9), cursor=itertools.count())
    response = await node.handle(ctx_for(seed=0))
    assert response.target == "heavy/m"
    assert light.calls == []


async def test_round_robin_cycles():
    """round_robin answers from each target in turn, across requests."""
    routes = compile_routes({"routes": {"rr": {"loadbalance": {"algorithm": "round_robin", "targets": [
        demo("a"), demo("b"), demo("c"),
    ]}}}})
    node = routes["rr"].node
    labels = [(await node.handle(ctx_for(route="rr"))).target for _ in range(7)]
    assert labels == ["demo/a", "demo/b", "demo/c", "demo/a", "demo/b", "demo/c", "demo/a"]


def test_round_robin_ignores_weights():
    """round_robin alternates evenly even with unequal weights."""
    routes = compile_routes({"routes": {"rr": {"loadbalance": {"algorithm": "round_robin", "targets": [
        {"weight": 10, **demo("a")}, {"weight": 1, **demo("b")},
    ]}}}})
    node = routes["rr"].node
    assert [node.pick(ctx_for()).model for _ in range(4)] == ["a", "b", "a", "b"]


# -- conditional ----------------------------------------------------------------------------


def rule_node(when: dict) -> ConditionalNode:
    routes = compile_routes({"routes": {"r": {"conditional": {
        "rules": [{"when": when, "then": demo("yes")}],
        "default": demo("no"),
    }}}})
    return routes["r"].node


M, P = "metadata", "params"

CONDITIONS = [
    # $eq and bare values
    ("eq-match", {"metadata.tier": {"$eq": "premium"}}, {M: {"tier": "premium"}}, True),
    ("eq-other", {"metadata.tier": {"$eq": "premium"}}, {M: {"tier": "free"}}, False),
    ("eq-missing", {"metadata.tier": {"$eq": "premium"}}, {}, False),
    ("bare-value-is-eq", {"metadata.tier": "premium"}, {M: {"tier": "premium"}}, True),
    ("bare-null-missing", {"metadata.x": None}, {}, False),
    ("bare-null-present", {"metadata.x": None}, {M: {"x": None}}, True),
    ("eq-int-float", {"params.n": {"$eq": 1}}, {P: {"n": 1.0}}, True),
    # $ne
    ("ne-other", {"metadata.tier": {"$ne": "premium"}}, {M: {"tier": "free"}}, True),
    ("ne-same", {"metadata.tier": {"$ne": "premium"}}, {M: {"tier": "premium"}}, False),
    ("ne-missing", {"metadata.tier": {"$ne": "premium"}}, {}, True),
    # comparisons
    ("gt-above", {"params.max_tokens": {"$gt": 4000}}, {P: {"max_tokens": 4001}}, True),
    ("gt-equal", {"params.max_tokens": {"$gt": 4000}}, {P: {"max_tokens": 4000}}, False),
    ("gt-missing", {"params.max_tokens": {"$gt": 4000}}, {}, False),
    ("gt-string", {"params.max_tokens": {"$gt": 4000}}, {P: {"max_tokens": "5000"}}, False),
    ("gt-bool", {"params.n": {"$gt": 0}}, {P: {"n": True}}, False),
    ("gte-equal", {"params.max_tokens": {"$gte": 4000}}, {P: {"max_tokens": 4000}}, True),
    ("gte-below", {"params.max_tokens": {"$gte": 4000}}, {P: {"max_tokens": 3999}}, False),
    ("lt-below", {"params.temperature": {"$lt": 0.5}}, {P: {"temperature": 0.2}}, True),
    ("lt-equal", {"params.temperature": {"$lt": 0.5}}, {P: {"temperature": 0.5}}, False),
    ("lte-equal", {"params.temperature": {"$lte": 0.5}}, {P: {"temperature": 0.5}}, True),
    ("lte-above", {"params.temperature": {"$lte": 0.5}}, {P: {"temperature": 0.6}}, False),
    ("lt-missing", {"params.temperature": {"$lt": 0.5}}, {}, False),
    ("range-inside", {"params.n": {"$gte": 1, "$lt": 10}}, {P: {"n": 5}}, True),
    ("range-outside", {"params.n": {"$gte": 1, "$lt": 10}}, {P: {"n": 10}}, False),
    # $in / $nin
    ("in-member", {"metadata.team": {"$in": ["research", "ml"]}}, {M: {"team": "ml"}}, True),
    ("in-non-member", {"metadata.team": {"$in": ["research", "ml"]}}, {M: {"team": "ops"}}, False),
    ("in-missing", {"metadata.team": {"$in": ["research", "ml"]}}, {}, False),
    ("in-list-overlap", {"metadata.team": {"$in": ["research", "ml"]}}, {M: {"team": ["ops", "ml"]}}, True),
    ("in-list-disjoint", {"metadata.team": {"$in": ["research", "ml"]}}, {M: {"team": ["ops"]}}, False),
    ("in-numbers", {"params.n": {"$in": [1, 2]}}, {P: {"n": 2}}, True),
    ("nin-non-member", {"metadata.team": {"$nin": ["research", "ml"]}}, {M: {"team": "ops"}}, True),
    ("nin-member", {"metadata.team": {"$nin": ["research", "ml"]}}, {M: {"team": "ml"}}, False),
    ("nin-missing", {"metadata.team": {"$nin": ["research", "ml"]}}, {}, True),
    ("nin-list-overlap", {"metadata.team": {"$nin": ["ml"]}}, {M: {"team": ["ops", "ml"]}}, False),
    # $regex
    ("regex-anchored", {"metadata.user": {"$regex": "^admin-"}}, {M: {"user": "admin-1"}}, True),
    ("regex-nomatch", {"metadata.user": {"$regex": "^admin-"}}, {M: {"user": "user-1"}}, False),
    ("regex-searches", {"metadata.user": {"$regex": "bot"}}, {M: {"user": "my-bot-7"}}, True),
    ("regex-non-string", {"metadata.user": {"$regex": "4"}}, {M: {"user": 42}}, False),
    ("regex-missing", {"metadata.user": {"$regex": ".*"}}, {}, False),
    # $exists
    ("exists-present", {"metadata.x": {"$exists": True}}, {M: {"x": 0}}, True),
    ("exists-present-null", {"metadata.x": {"$exists": True}}, {M: {"x": None}}, True),
    ("exists-missing", {"metadata.x": {"$exists": True}}, {}, False),
    ("not-exists-missing", {"metadata.x": {"$exists": False}}, {}, True),
    ("not-exists-present", {"metadata.x": {"$exists": False}}, {M: {"x": 1}}, False),
    # $and / $or / $not and implicit and
    ("and-both", {"$and": [{"metadata.a": 1}, {"metadata.b": 2}]}, {M: {"a": 1, "b": 2}}, True),
    ("and-one", {"$and": [{"metadata.a": 1}, {"metadata.b": 2}]}, {M: {"a": 1, "b": 3}}, False),
    ("or-second", {"$or": [{"metadata.a": 1}, {"metadata.b": 2}]}, {M: {"b": 2}}, True),
    ("or-none", {"$or": [{"metadata.a": 1}, {"metadata.b": 2}]}, {}, False),
    ("not-negates", {"$not": {"metadata.a": 1}}, {M: {"a": 2}}, True),
    ("not-of-match", {"$not": {"metadata.a": 1}}, {M: {"a": 1}}, False),
    ("not-missing", {"$not": {"metadata.a": 1}}, {}, True),
    ("implicit-and", {"metadata.a": 1, "params.stream": True}, {M: {"a": 1}, P: {"stream": True}}, True),
    ("implicit-and-fails", {"metadata.a": 1, "params.stream": True}, {M: {"a": 1}, P: {"stream": False}}, False),
    ("nested-combinators",
     {"$or": [{"$and": [{"metadata.a": 1}, {"$not": {"metadata.b": 2}}]}, {"route": "special"}]},
     {M: {"a": 1, "b": 3}}, True),
    ("nested-combinators-route",
     {"$or": [{"$and": [{"metadata.a": 1}, {"$not": {"metadata.b": 2}}]}, {"route": "special"}]},
     {M: {"a": 1, "b": 2}, "route": "special"}, True),
    ("nested-combinators-none",
     {"$or": [{"$and": [{"metadata.a": 1}, {"$not": {"metadata.b": 2}}]}, {"route": "special"}]},
     {M: {"a": 1, "b": 2}}, False),
    # dotted paths
    ("metadata-deep", {"metadata.org.team.name": "ml"}, {M: {"org": {"team": {"name": "ml"}}}}, True),
    ("metadata-deep-through-scalar", {"metadata.org.team.name": "ml"}, {M: {"org": "flat"}}, False),
    ("metadata-deep-missing-leaf", {"metadata.org.team.name": "ml"}, {M: {"org": {"team": {}}}}, False),
    ("metadata-deep-missing-ne", {"metadata.org.team.name": {"$ne": "ml"}}, {M: {"org": 5}}, True),
    ("params-nested", {"params.response_format.type": "json_object"},
     {P: {"response_format": {"type": "json_object"}}}, True),
    ("params-top", {"params.stream": True}, {P: {"stream": True}}, True),
    ("params-not-metadata", {"metadata.max_tokens": {"$exists": True}}, {P: {"max_tokens": 1}}, False),
    ("metadata-not-params", {"params.team": {"$exists": True}}, {M: {"team": "x"}}, False),
    # key.name and route
    ("key-name-eq", {"key.name": "research"}, {"key": "research"}, True),
    ("key-name-other", {"key.name": "research"}, {"key": "ops"}, False),
    ("key-name-missing", {"key.name": "research"}, {}, False),
    ("key-name-missing-not-exists", {"key.name": {"$exists": False}}, {}, True),
    ("key-name-in", {"key.name": {"$in": ["a", "research"]}}, {"key": "research"}, True),
    ("route-eq", {"route": "tiered"}, {"route": "tiered"}, True),
    ("route-other", {"route": "tiered"}, {"route": "cheap"}, False),
    ("route-regex", {"route": {"$regex": "^gpt-"}}, {"route": "gpt-4o"}, True),
]


@pytest.mark.parametrize("when, given, expected", [c[1:] for c in CONDITIONS], ids=[c[0] for c in CONDITIONS])
def test_condition_table(when, given, expected):
    """Each operator, combinator and field path decides as the table says."""
    node = rule_node(when)
    body = {"model": "r", **given.get(P, {})}
    ctx = ctx_for(body, route=given.get("route", "r"), metadata=given.get(M), key_name=given.get("key"))
    assert node.choose(ctx).model == ("yes" if expected else "no")


@pytest.mark.parametrize(
    "when, metadata",
    [
        ({"metadata.flag": {"$eq": 1}}, {"flag": True}),
        ({"metadata.flag": 0}, {"flag": False}),
        ({"metadata.flag": {"$in": [1, 2]}}, {"flag": True}),
    ],
    ids=["eq-1-vs-true", "bare-0-vs-false", "in-1-vs-true"],
)
def test_boolean_never_equals_number(when, metadata):
    """A JSON boolean does not match a number (true is not 1), as $gt already treats it."""
    assert rule_node(when).choose(ctx_for(metadata=metadata)).model == "no"


def test_first_matching_rule_wins():
    """Rules are checked in order; the first that holds decides."""
    routes = compile_routes({"routes": {"r": {"conditional": {"rules": [
        {"when": {"metadata.tier": "premium"}, "then": demo("first")},
        {"when": {"metadata.tier": {"$exists": True}}, "then": demo("second")},
    ], "default": demo("default")}}}})
    node = routes["r"].node
    assert node.choose(ctx_for(metadata={"tier": "premium"})).model == "first"
    assert node.choose(ctx_for(metadata={"tier": "free"})).model == "second"
    assert node.choose(ctx_for()).model == "default"


async def test_conditional_routes_through_handle():
    """handle() sends the request to the chosen branch."""
    node = rule_node({"metadata.tier": "premium"})
    response = await node.handle(ctx_for(metadata={"tier": "premium"}))
    assert response.target == "demo/yes"


async def test_conditional_without_match_or_default_is_400():
    """No rule matching and no default is a GatewayError 400 naming the route."""
    routes = compile_routes({"routes": {"tiered": {"conditional": {"rules": [
        {"when": {"metadata.tier": "premium"}, "then": demo("yes")},
    ]}}}})
    with pytest.raises(GatewayError) as info:
        await routes["tiered"].node.handle(ctx_for(route="tiered", metadata={"tier": "free"}))
    assert info.value.status == 400
    assert info.value.code == "no_route_matched"
    assert "'tiered'" in info.value.message


# -- canary ---------------------------------------------------------------------------------


def canary_node(percent: float, sticky: str | None = None) -> CanaryNode:
    spec = {"percent": percent, "stable": demo("stable"), "canary": demo("canary")}
    if sticky:
        spec["sticky"] = sticky
    return compile_routes({"routes": {"c": {"canary": spec}}})["c"].node


def arm_of(node: CanaryNode, ctx) -> "TargetNode":
    """The target node the canary picks for a request."""
    return node.choose(ctx)[1]


def test_canary_random_split_within_bounds():
    """Without a sticky value, 10% of 10000 seeded requests go to the canary (+- 1.5%)."""
    node, ctx = canary_node(10), ctx_for(seed=2024)
    picks = [arm_of(node, ctx).model for _ in range(10000)]
    assert abs(picks.count("canary") / 10000 - 0.10) <= 0.015


def test_canary_sticky_share_across_users_within_bounds():
    """Across 4000 distinct users, about 25% land on the canary (+- 3%)."""
    node = canary_node(25)
    picks = [arm_of(node, ctx_for(metadata={"user": f"user-{i}"}, seed=i)).model for i in range(4000)]
    assert abs(picks.count("canary") / 4000 - 0.25) <= 0.03


def test_canary_is_sticky_per_user():
    """The same metadata.user always lands on the same arm, whatever the random state."""
    node = canary_node(50)
    for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
        arms = {arm_of(node, ctx_for(metadata={"user": user}, seed=s)).model for s in range(40)}
        assert len(arms) == 1, user


def test_canary_sticky_users_reach_both_arms():
    """Stickiness still spreads different users over both arms."""
    node = canary_node(50)
    arms = {arm_of(node, ctx_for(metadata={"user": f"u{i}"})).model for i in range(50)}
    assert arms == {"stable", "canary"}


def test_canary_sticky_on_key_name():
    """sticky: key.name pins each key to one arm."""
    node = canary_node(50, sticky="key.name")
    for key in ("k1", "k2", "k3", "k4"):
        arms = {arm_of(node, ctx_for(key_name=key, seed=s)).model for s in range(30)}
        assert len(arms) == 1


def test_canary_null_sticky_value_is_random():
    """A null metadata.user is split at random like a missing one."""
    node = canary_node(50)
    arms = {arm_of(node, ctx_for(metadata={"user": None}, seed=s)).model for s in range(40)}
    assert arms == {"stable", "canary"}


@pytest.mark.parametrize("percent, expected", [(0, "stable"), (100, "canary")])
def test_canary_extremes(percent, expected):
    """percent 0 never picks the canary; percent 100 always does."""
    node = canary_node(percent)
    picks = {arm_of(node, ctx_for(seed=s, metadata={"user": f"u{s}"} if s % 2 else {})).model
             for s in range(200)}
    assert picks == {expected}


def open_circuit(node: TargetNode) -> None:
    """Record failures until the target's breaker opens."""
    now = time.monotonic()
    for _ in range(node.breaker.failure_threshold):
        node.state.record(node.breaker, True, now)
    assert not node.available(now)


@pytest.mark.parametrize("open_arm, other", [("canary", "stable"), ("stable", "canary")])
def test_canary_open_arm_gives_its_share_to_the_other(open_arm, other):
    """With one arm's circuit open, every request, sticky ones included, goes to the other."""
    node = canary_node(50)
    open_circuit(getattr(node, open_arm))
    picks = {arm_of(node, ctx_for(seed=s, metadata={"user": f"u{s}"} if s % 2 else {})).model
             for s in range(200)}
    assert picks == {other}


def test_canary_both_arms_open_keeps_the_draw():
    """With both arms open there is nowhere better to go: the drawn arm answers (503)."""
    node = canary_node(50)
    open_circuit(node.canary), open_circuit(node.stable)
    picks = {arm_of(node, ctx_for(seed=s)).model for s in range(100)}
    assert picks == {"stable", "canary"}


def test_canary_at_zero_percent_never_takes_stable_traffic():
    """A canary at 0% stays out even while the stable arm is open."""
    node = canary_node(0)
    open_circuit(node.stable)
    assert {arm_of(node, ctx_for(seed=s)).model for s in range(50)} == {"stable"}


def test_canary_arm_behind_a_route_reference_counts_as_open():
    """An arm that is a route whose every target is open is open too."""
    routes = compile_routes({"routes": {
        "next": {"fallback": {"targets": [demo("n1"), demo("n2")]}},
        "c": {"canary": {"percent": 50, "stable": demo("stable"), "canary": {"route": "next"}}},
    }})
    node = routes["c"].node
    for child in routes["next"].node.nodes:
        open_circuit(child)
    assert {arm_of(node, ctx_for(seed=s)).model for s in range(100)} == {"stable"}


async def test_canary_handle_uses_chosen_arm():
    """handle() answers from the chosen arm."""
    node = canary_node(100)
    response = await node.handle(ctx_for())
    assert response.target == "demo/canary"


# -- override_params ------------------------------------------------------------------------


CLIENT_BODY = {
    "model": "public",
    "messages": [{"role": "user", "content": "hi"}],
    "temperature": 0.7,
    "response_format": {"type": "text", "extra": {"keep": True}},
}


def override_target(provider: FakeProvider):
    routes = compile_routes({"routes": {"r": {"target": {
        "provider": "demo", "model": "m",
        "override_params": {"temperature": 0, "response_format": {"type": "json_object"},
                            "stop": ["a", "b"], "metadata": {"tags": ["x"]}},
    }}}})
    compiled = routes["r"].node
    return target(provider, "m", override_params=compiled.override_params)


async def test_override_params_deep_merged_into_sent_body():
    """override_params replace scalars, merge nested mappings, and arrive as plain JSON types."""
    provider = FakeProvider([ok()])
    ctx = ctx_for(json.loads(json.dumps(CLIENT_BODY)))
    await override_target(provider).handle(ctx)
    sent = provider.calls[0].sent
    assert sent == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0,
        "response_format": {"type": "json_object", "extra": {"keep": True}},
        "stop": ["a", "b"],
        "metadata": {"tags": ["x"]},
    }
    assert type(sent["stop"]) is list and type(sent["metadata"]) is dict


async def test_override_params_do_not_mutate_client_body():
    """The client's ctx.body, nested parts included, is unchanged after the call."""
    provider = FakeProvider([ok()])
    body = json.loads(json.dumps(CLIENT_BODY))
    ctx = ctx_for(body)
    await override_target(provider).handle(ctx)
    assert ctx.body == CLIENT_BODY
    assert provider.calls[0].sent is not ctx.body
    assert provider.calls[0].sent["response_format"] is not ctx.body["response_format"]


async def test_fallback_second_target_starts_from_client_body():
    """A fallback's next target gets the client's body, not the first target's overrides."""
    first = FakeProvider([fail(503)], name="a")
    second = FakeProvider([ok()], name="b")
    node = FallbackNode("$.f", (override_target(first), target(second, "plain")), StatusMatcher.of([503]))
    await node.handle(ctx_for(json.loads(json.dumps(CLIENT_BODY))))
    assert second.calls[0].body == {**CLIENT_BODY, "model": "plain"}


# -- deep_merge -----------------------------------------------------------------------------


def test_deep_merge_nested_mappings_merge():
    """Nested mappings merge key by key."""
    assert deep_merge({"a": {"x": 1, "y": 2}}, {"a": {"y": 3, "z": 4}}) == {"a": {"x": 1, "y": 3, "z": 4}}


def test_deep_merge_scalars_and_lists_replace():
    """Scalars and lists in the override replace the base's (lists are not concatenated)."""
    assert deep_merge({"t": 1, "stop": ["a"]}, {"t": 2, "stop": ["b"]}) == {"t": 2, "stop": ["b"]}


def test_deep_merge_mapping_over_scalar_replaces():
    """A mapping over a non-mapping replaces it; a scalar over a mapping replaces it too."""
    assert deep_merge({"a": 1, "b": {"x": 1}}, {"a": {"k": 1}, "b": None}) == {"a": {"k": 1}, "b": None}


def test_deep_merge_does_not_mutate_inputs():
    """Neither the base nor the override is changed, and merged nested dicts are new objects."""
    base = {"a": {"x": 1}, "l": [1]}
    override = {"a": {"y": 2}, "l": [2]}
    merged = deep_merge(base, override)
    assert base == {"a": {"x": 1}, "l": [1]} and override == {"a": {"y": 2}, "l": [2]}
    merged["a"]["z"] = 3
    assert base["a"] == {"x": 1} and override["a"] == {"y": 2}


def test_deep_merge_thaws_frozen_values():
    """Frozen overrides (mappingproxy, tuples) come out as dicts and lists."""
    frozen = MappingProxyType({"rf": MappingProxyType({"type": "json"}), "stop": ("a", MappingProxyType({"b": 1}))})
    merged = deep_merge({}, frozen)
    assert merged == {"rf": {"type": "json"}, "stop": ["a", {"b": 1}]}
    assert type(merged["rf"]) is dict and type(merged["stop"]) is list and type(merged["stop"][1]) is dict


def test_deep_merge_empty_override_is_a_copy():
    """Merging nothing gives an equal but distinct dict."""
    base = {"a": 1}
    merged = deep_merge(base, {})
    assert merged == base and merged is not base
