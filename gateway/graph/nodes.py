"""Strategy nodes of the routing graph. Frozen: every decision that can be made at compile time
was made there. Each node has a ``path`` (its JSON path in the config) for logs and errors.

Every node implements ``types.Node``: its ``kind``, its ``children()`` and
``async handle(ctx) -> UpstreamResponse``, raising UpstreamError when it could not get an answer.

TAIL_CALLS: a node that only picks a child and hands the request on (a route reference, a
conditional, a load balancer) returns the child's ``handle(ctx)`` coroutine instead of awaiting
it in one of its own: one coroutine frame fewer for the whole request, which every resume of
the upstream call goes through. Callers always ``await node.handle(ctx)`` at once, so a
failure raised while picking (no rule matched, every target open) is raised at the same place.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import os
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, AsyncIterator, Callable, ClassVar, Coroutine, Iterable, Mapping


from ..errors import GatewayError, UpstreamError
from ..providers.base import (
    ENDPOINT_CAPABILITY, NativeBody, Timeouts, UpstreamRequest, UpstreamResponse,
)
from ..providers.hops import send_traceparent
from ..providers.microbatch import EmbeddingBatcher
from ..providers.scrub import NO_SECRETS, Scrubber
from ..state.canary import CanaryState
from ..state.target import ProviderHealth, TargetState
from ..types import Node, Provider
from .conditions import Predicate, is_missing
from .context import Attempt, RequestContext
from .plugin_layer import NamedCheck
from .policies import BreakerPolicy, RetryPolicy, StatusMatcher


# Failures after which a fallback always moves on, whatever its on_status lists: the target
# was skipped (open circuit, failing health checks, an endpoint its provider cannot serve) or
# its answer refused (guardrail).
ALWAYS_MOVE_ON = frozenset({"guardrail", "circuit_open", "unsupported"})


@dataclass(frozen=True, slots=True)
class TargetNode:
    """One provider model, with its retry, timeout and circuit-breaker policies.

    ``state`` and ``health`` are runtime handles from the StateRegistry, shared by every node
    naming the same target and kept across reloads.
    """

    kind: ClassVar[str] = "target"
    path: str
    provider: Provider
    model: str
    timeouts: Timeouts
    retry: RetryPolicy
    breaker: BreakerPolicy
    state: TargetState
    health: ProviderHealth
    override_params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    checks: Iterable[NamedCheck] = ()  # attempt checks run on each whole answer
    scrubber: Scrubber = NO_SECRETS  # every provider error is scrubbed of credentials here
    batcher: EmbeddingBatcher | None = None  # the route's micro-batching of embeddings, if any

    def children(self) -> tuple[Node, ...]:
        return ()

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.model}"

    def available(self, now: float) -> bool:
        return self.health.healthy and self.state.available(self.breaker, now)

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        body = {**ctx.body, "model": self.model}
        if self.override_params:
            body = deep_merge(body, self.override_params)
        native = _native_for(ctx.native if ctx.send_native else None, self.model,
                             self.override_params)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(ctx, body, native)
            except UpstreamError as err:
                delay = self._retry_delay(ctx, err, attempt)
                if delay is None:
                    raise
                if delay:
                    slept = time.monotonic()
                    await asyncio.sleep(delay)
                    ctx.backoff_ms += (time.monotonic() - slept) * 1000

    def _retry_delay(self, ctx: RequestContext, err: UpstreamError, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None to give up on this target."""
        if err.error_class in ALWAYS_MOVE_ON or not self.retry.should_retry(err, attempt):
            return None
        delay = self.retry.delay(attempt, err.retry_after, ctx.rng)
        remaining = ctx.remaining()
        if delay is None or (remaining is not None and delay >= remaining):
            return None
        if ctx.retry_budget is not None and not ctx.retry_budget.try_retry(time.monotonic()):
            return None
        return delay

    async def _attempt(self, ctx: RequestContext, body: dict[str, Any],
                       native: NativeBody | None = None) -> UpstreamResponse:
        label, state = self.label, self.state
        timeouts = self.timeouts
        remaining = ctx.remaining()
        if remaining is not None:
            if remaining <= 0:
                raise _deadline_error(label)
            timeouts = timeouts.clipped(remaining)
        if ENDPOINT_CAPABILITY[ctx.endpoint] not in self.provider.capabilities:
            ctx.attempts.append(Attempt(label, 400, "unsupported", 0.0, time.monotonic(),
                                        attempt_span(ctx)))
            raise UpstreamError(
                400, "unsupported",
                f"{label} cannot serve {ctx.endpoint} (provider type {self.provider.spec.type})",
                target=label, from_upstream=False)
        if not self.health.healthy or not state.allow(self.breaker, time.monotonic()):
            ctx.attempts.append(Attempt(label, 503, "circuit_open", 0.0, time.monotonic(),
                                        attempt_span(ctx)))
            why = "circuit open" if self.health.healthy else "failing health checks"
            raise UpstreamError(503, "circuit_open", f"{label} is skipped: {why}",
                                target=label, from_upstream=False)
        span = attempt_span(ctx)
        started = state.started()
        request = UpstreamRequest(ctx.endpoint, body, ctx.stream, timeouts, ctx.files, native)
        try:
            if self.batcher is not None and ctx.endpoint == "embeddings":
                response = await self.batcher.send(self.provider, request)
            else:
                response = await self.provider.send(request)
        except UpstreamError as err:
            ended = time.monotonic()
            state.done()
            state.record(self.breaker, self.breaker.on.matches(err), ended, ctx.route,
                         breaker=not err.shared)
            err.target = label
            self.scrubber.error(err)
            ms = (ended - started) * 1000
            ctx.upstream_ms += ms
            ctx.attempts.append(Attempt(label, err.status, err.error_class, ms, started, span))
            raise
        except BaseException:  # cancelled (the client left): free a half-open probe slot
            state.done()
            state.record(self.breaker, False, time.monotonic(), ctx.route)
            raise
        ended = time.monotonic()
        ms = (ended - started) * 1000
        ctx.upstream_ms += ms
        state.finished(ms)
        state.record(self.breaker, False, ended, ctx.route)
        if response.stream is not None:
            response.stream = _count_until_end(response.stream, state, self.scrubber)
        else:
            state.done()
            response.target = label  # the checks may name it
            for check in self.checks:
                reason = await check.reason(ctx, response)
                if reason:
                    ctx.attempts.append(Attempt(label, 503, "guardrail", ms, started, span))
                    raise UpstreamError(
                        503, "guardrail",
                        f"the answer of {label} was refused by plugin '{check.plugin}': {reason}",
                        target=label, from_upstream=False,
                    )
        ctx.attempts.append(Attempt(label, response.status, None, ms, started, span))
        response.target = ctx.target = label
        return response


def attempt_span(ctx: RequestContext) -> str | None:
    """With traces on, a new span id for an upstream call, sent upstream as its traceparent."""
    if ctx.trace_sampled is None:
        return None
    span = os.urandom(8).hex()
    send_traceparent(f"00-{ctx.trace_id}-{span}-{'01' if ctx.trace_sampled else '00'}")
    return span


def _native_for(native: NativeBody | None, model: str,
                override: Mapping[str, Any]) -> NativeBody | None:
    """A front door's native body as this target sends it: its model, its override_params."""
    if native is None:
        return None
    body = {**native.body, "model": model}
    return NativeBody(native.api, deep_merge(body, override) if override else body,
                      native.headers)


async def _count_until_end(stream: AsyncIterator[bytes], state: TargetState,
                           scrubber: Scrubber) -> AsyncIterator[bytes]:
    """A stream is in flight until its last chunk (least_busy counts it). An error that ends
    it is scrubbed like any other provider error."""
    try:
        async for chunk in stream:
            yield chunk
    except UpstreamError as err:
        raise scrubber.error(err)
    finally:
        state.done()


@dataclass(frozen=True, slots=True)
class DeadlineNode:
    """A strategy node's own `timeout`: the subtree must answer within it. The tighter of this
    and any deadline already set (the request's, an outer node's) wins."""

    kind: ClassVar[str] = "deadline"
    path: str
    seconds: float
    node: Node

    def children(self) -> tuple[Node, ...]:
        return (self.node,)

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        outer = ctx.deadline
        mine = time.monotonic() + self.seconds
        ctx.deadline = mine if outer is None else min(outer, mine)
        try:
            return await self.node.handle(ctx)
        finally:
            ctx.deadline = outer

    def available(self, now: float) -> bool:
        return _available(self.node, now)


@dataclass(frozen=True, slots=True)
class RouteRefNode:
    """A reference to another route, resolved at compile time."""

    kind: ClassVar[str] = "route"
    path: str
    route: str
    node: Node

    def children(self) -> tuple[Node, ...]:
        return (self.node,)

    def handle(self, ctx: RequestContext) -> Coroutine[Any, Any, UpstreamResponse]:
        return self.node.handle(ctx)  # a tail call: no coroutine of its own (see TAIL_CALLS)

    def available(self, now: float) -> bool:
        return _available(self.node, now)


@dataclass(frozen=True, slots=True)
class FallbackNode:
    """Tries its children in order; moves on only for failures listed in ``on``."""

    kind: ClassVar[str] = "fallback"
    path: str
    nodes: tuple[Node, ...]
    on: StatusMatcher

    def children(self) -> tuple[Node, ...]:
        return self.nodes

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        last: UpstreamError | None = None
        for child in self.nodes:
            try:
                return await child.handle(ctx)
            except UpstreamError as err:
                last = err
                if not self.on.matches(err) and err.error_class not in ALWAYS_MOVE_ON:
                    raise
                remaining = ctx.remaining()
                if remaining is not None and remaining <= 0:
                    break
        assert last is not None  # children is never empty (schema: minItems 1)
        raise last

    def available(self, now: float) -> bool:
        return any(_available(child, now) for child in self.nodes)


@dataclass(frozen=True, slots=True)
class LoadBalanceNode:
    """Picks one child per request among those available (children of weight 0 are drained,
    and targets with an open circuit or failing health checks are left out, weights
    renormalised): weighted (random by weight), round_robin, least_busy (fewest requests in
    flight) or latency (lowest EWMA of time to first byte, exploring now and then so a
    recovered target gets traffic again)."""

    kind: ClassVar[str] = "loadbalance"
    path: str
    algorithm: str
    nodes: tuple[Node, ...]
    weights: tuple[float, ...]
    cumulative: tuple[float, ...]  # running sums of weights, for bisect
    cursor: "itertools.count[int]"  # runtime state handle (round robin), from the registry

    EXPLORE = 0.1

    def children(self) -> tuple[Node, ...]:
        return self.nodes

    def pick(self, ctx: RequestContext) -> Node:
        now = time.monotonic()
        children = self.nodes
        weights = self.weights
        live = [i for i, c in enumerate(children) if weights[i] > 0 and _available(c, now)]
        if not live:
            raise UpstreamError(503, "circuit_open",
                                f"every target of {self.path} is unavailable (open circuits)",
                                from_upstream=False)
        if self.algorithm == "round_robin":
            return children[live[next(self.cursor) % len(live)]]
        if self.algorithm == "least_busy":
            return children[min(live, key=lambda i: (_in_flight(children[i]), ctx.rng.random()))]
        if self.algorithm == "latency":
            return children[self._fastest(live, ctx)]
        if len(live) == len(children):
            point = ctx.rng.random() * self.cumulative[-1]
            return children[bisect.bisect_right(self.cumulative, point)]
        sums = list(itertools.accumulate(self.weights[i] for i in live))
        return children[live[bisect.bisect_right(sums, ctx.rng.random() * sums[-1])]]

    def _fastest(self, live: list[int], ctx: RequestContext) -> int:
        latencies = {i: _latency(self.nodes[i]) for i in live}
        unmeasured = [i for i, ms in latencies.items() if ms is None]
        if unmeasured:
            return ctx.rng.choice(unmeasured)
        if len(live) > 1 and ctx.rng.random() < self.EXPLORE:
            return ctx.rng.choice(live)
        return min(live, key=lambda i: latencies[i] or 0.0)  # every one is measured here

    def probabilities(self) -> tuple[float, ...]:
        """Each child's share of traffic when every child is available: by weight for
        ``weighted``, equal among the children not drained for the other algorithms."""
        if self.algorithm != "weighted":
            weights = tuple(1.0 if w > 0 else 0.0 for w in self.weights)
            return tuple(w / sum(weights) for w in weights)
        total = self.cumulative[-1]
        return tuple(w / total for w in self.weights)

    def handle(self, ctx: RequestContext) -> Coroutine[Any, Any, UpstreamResponse]:
        return self.pick(ctx).handle(ctx)  # a tail call (see TAIL_CALLS)

    def available(self, now: float) -> bool:
        return any(w > 0 and _available(c, now) for w, c in zip(self.weights, self.nodes))


def _available(node: Node, now: float) -> bool:
    """False when the node certainly cannot answer now: every target it can reach is skipped
    (open circuit, failing health checks). A node type without ``available`` (a plugin's
    strategy) counts as available."""
    check = getattr(node, "available", None)
    return check(now) if check is not None else True


def _in_flight(node: Node) -> int:
    return node.state.in_flight if isinstance(node, TargetNode) else 0


def _latency(node: Node) -> float | None:
    return node.state.ewma_ms if isinstance(node, TargetNode) else 0.0


@dataclass(frozen=True, slots=True)
class Rule:
    path: str
    when: Predicate
    then: Node
    reads: tuple[str, ...] = ()  # the request fields ``when`` reads (conditions.condition_fields)


@dataclass(frozen=True, slots=True)
class ConditionalNode:
    """The first rule whose condition holds decides; else ``default``; else 400."""

    kind: ClassVar[str] = "conditional"
    path: str
    route: str
    rules: tuple[Rule, ...]
    default: Node | None

    def children(self) -> tuple[Node, ...]:
        rules = tuple(rule.then for rule in self.rules)
        return rules if self.default is None else rules + (self.default,)

    def choose(self, ctx: RequestContext) -> Node | None:
        for rule in self.rules:
            if rule.when(ctx):
                return rule.then
        return self.default

    def handle(self, ctx: RequestContext) -> Coroutine[Any, Any, UpstreamResponse]:
        for rule in self.rules:  # choose(), inlined
            if rule.when(ctx):
                return rule.then.handle(ctx)  # a tail call (see TAIL_CALLS)
        if self.default is None:
            raise GatewayError(
                400,
                f"no rule of route '{self.route}' matches this request and it has no default",
                code="no_route_matched",
            )
        return self.default.handle(ctx)

    def available(self, now: float) -> bool:
        """Which branch serves depends on the request: unavailable only when none can."""
        return any(_available(branch, now) for branch in self.children())


@dataclass(frozen=True, slots=True)
class CanaryNode:
    """Sends ``percent`` of traffic to ``canary``; a caller with a sticky value always lands
    on the same arm (hash of the value), others are split at random. An arm that cannot
    answer (every target it reaches has an open circuit or fails its health checks) gives its
    share to the other arm, as a load balancer leaves out open targets. Counts each arm and,
    with a rollback policy, sends everything to ``stable`` once the canary's error rate
    reaches ``rollback_error_rate`` after ``rollback_min_requests``."""

    kind: ClassVar[str] = "canary"
    path: str
    percent: float
    stable: Node
    canary: Node
    sticky: Callable[[RequestContext], Any]
    state: CanaryState
    rollback_error_rate: float | None = None
    rollback_min_requests: int = 50

    def children(self) -> tuple[Node, ...]:
        return (self.stable, self.canary)

    @property
    def share(self) -> float:
        """The canary's current share in percent (0 once rolled back)."""
        return 0.0 if self.state.rolled_back else self.percent

    def choose(self, ctx: RequestContext) -> tuple[str, Node]:
        if self.state.rolled_back:
            return "stable", self.stable
        value = self.sticky(ctx)
        if is_missing(value) or value is None:
            point = ctx.rng.random() * 100
        else:
            digest = hashlib.blake2b(str(value).encode(), digest_size=8).digest()
            point = int.from_bytes(digest, "big") / 2**64 * 100
        drawn, other = ("canary", "stable") if point < self.percent else ("stable", "canary")
        arms = {"canary": self.canary, "stable": self.stable}
        if self.percent > 0:  # a canary at 0% never takes traffic, not even the stable arm's
            now = time.monotonic()
            if not _available(arms[drawn], now) and _available(arms[other], now):
                return other, arms[other]
        return drawn, arms[drawn]

    def available(self, now: float) -> bool:
        if self.state.rolled_back or self.percent <= 0:
            return _available(self.stable, now)
        return _available(self.stable, now) or _available(self.canary, now)

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        arm, node = self.choose(ctx)
        started = time.monotonic()
        try:
            response = await node.handle(ctx)
        except UpstreamError:
            self._record(arm, True, started, None)
            raise
        self._record(arm, False, started, response.usage)
        return response

    def _record(self, arm: str, failed: bool, started: float,
                usage: dict[str, Any] | None) -> None:
        self.state.record(arm, failed, _ms(started), usage, self.rollback_error_rate,
                          self.rollback_min_requests)


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``override`` merged over ``base``; nested mappings merge, the rest replaces."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = _thaw(value)
    return merged


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _deadline_error(label: str) -> UpstreamError:
    return UpstreamError(
        408, "timeout", "the request's deadline passed before this target was tried",
        target=label, from_upstream=False,
    )
