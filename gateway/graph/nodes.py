"""Strategy nodes of the routing graph. Frozen: every decision that can be made at compile time
was made there. Each node has a ``path`` (its JSON path in the config) for logs and errors.

Every node implements ``async handle(ctx) -> UpstreamResponse`` and raises UpstreamError when
it could not get an answer.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol

from ..errors import GatewayError, UpstreamError
from ..providers.base import Provider, Timeouts, UpstreamRequest, UpstreamResponse
from .conditions import Predicate, is_missing
from .context import Attempt, RequestContext
from .policies import RetryPolicy, StatusMatcher


class Node(Protocol):
    path: str

    async def handle(self, ctx: RequestContext) -> UpstreamResponse: ...


@dataclass(frozen=True, slots=True)
class TargetNode:
    """One provider model, with its retry and timeout policies."""

    path: str
    provider: Provider
    model: str
    timeouts: Timeouts
    retry: RetryPolicy
    override_params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    checks: tuple = ()  # plugin_layer.NamedCheck: attempt checks run on each whole answer

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.model}"

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        body = {**ctx.body, "model": self.model}
        if self.override_params:
            body = deep_merge(body, self.override_params)
        label, retry = self.label, self.retry
        attempt = 0
        while True:
            attempt += 1
            timeouts = self.timeouts
            remaining = ctx.remaining()
            if remaining is not None:
                if remaining <= 0:
                    raise _deadline_error(label)
                timeouts = timeouts.clipped(remaining)
            started = time.monotonic()
            try:
                response = await self.provider.send(
                    UpstreamRequest(ctx.endpoint, body, ctx.stream, timeouts)
                )
            except UpstreamError as err:
                err.target = label
                ctx.attempts.append(Attempt(label, err.status, err.error_class, _ms(started)))
                if not retry.should_retry(err, attempt):
                    raise
                delay = retry.delay(attempt, err.retry_after, ctx.rng)
                remaining = ctx.remaining()
                if delay is None or (remaining is not None and delay >= remaining):
                    raise
                if delay:
                    await asyncio.sleep(delay)
                continue
            if self.checks and response.body is not None:
                for check in self.checks:
                    reason = await check.reason(ctx, response)
                    if reason:
                        ctx.attempts.append(Attempt(label, 503, "guardrail", _ms(started)))
                        raise UpstreamError(
                            503, "guardrail",
                            f"the answer of {label} was refused by plugin '{check.plugin}': {reason}",
                            target=label, from_upstream=False,
                        )
            ctx.attempts.append(Attempt(label, response.status, None, _ms(started)))
            response.target = label
            return response


@dataclass(frozen=True, slots=True)
class RouteRefNode:
    """A reference to another route, resolved at compile time."""

    path: str
    route: str
    node: Node

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        return await self.node.handle(ctx)


@dataclass(frozen=True, slots=True)
class FallbackNode:
    """Tries its children in order; moves on only for failures listed in ``on``."""

    path: str
    children: tuple[Node, ...]
    on: StatusMatcher

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        last: UpstreamError | None = None
        for child in self.children:
            try:
                return await child.handle(ctx)
            except UpstreamError as err:
                last = err
                # A refused answer is never returned: always try the next target.
                if not self.on.matches(err) and err.error_class != "guardrail":
                    raise
                remaining = ctx.remaining()
                if remaining is not None and remaining <= 0:
                    break
        assert last is not None  # children is never empty (schema: minItems 1)
        raise last


@dataclass(frozen=True, slots=True)
class LoadBalanceNode:
    """Picks one child per request: weighted (random by weight) or round_robin."""

    path: str
    algorithm: str
    children: tuple[Node, ...]
    weights: tuple[float, ...]
    cumulative: tuple[float, ...]  # running sums of weights, for bisect
    cursor: "itertools.count[int]"  # runtime state handle (round robin), from the registry

    def pick(self, ctx: RequestContext) -> Node:
        if self.algorithm == "round_robin":
            return self.children[next(self.cursor) % len(self.children)]
        point = ctx.rng.random() * self.cumulative[-1]
        return self.children[bisect.bisect_right(self.cumulative, point)]

    def probabilities(self) -> tuple[float, ...]:
        total = self.cumulative[-1]
        return tuple(w / total for w in self.weights)

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        return await self.pick(ctx).handle(ctx)


@dataclass(frozen=True, slots=True)
class Rule:
    path: str
    when: Predicate
    then: Node


@dataclass(frozen=True, slots=True)
class ConditionalNode:
    """The first rule whose condition holds decides; else ``default``; else 400."""

    path: str
    route: str
    rules: tuple[Rule, ...]
    default: Node | None

    def choose(self, ctx: RequestContext) -> Node | None:
        for rule in self.rules:
            if rule.when(ctx):
                return rule.then
        return self.default

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        node = self.choose(ctx)
        if node is None:
            raise GatewayError(
                400,
                f"no rule of route '{self.route}' matches this request and it has no default",
                code="no_route_matched",
            )
        return await node.handle(ctx)


@dataclass(frozen=True, slots=True)
class CanaryNode:
    """Sends ``percent`` of traffic to ``canary``; a caller with a sticky value always lands
    on the same arm (hash of the value), others are split at random."""

    path: str
    percent: float
    stable: Node
    canary: Node
    sticky: Callable[[RequestContext], Any]

    def choose(self, ctx: RequestContext) -> Node:
        value = self.sticky(ctx)
        if is_missing(value) or value is None:
            point = ctx.rng.random() * 100
        else:
            digest = hashlib.blake2b(str(value).encode(), digest_size=8).digest()
            point = int.from_bytes(digest, "big") / 2**64 * 100
        return self.canary if point < self.percent else self.stable

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        return await self.choose(ctx).handle(ctx)


def deep_merge(base: dict, override: Mapping[str, Any]) -> dict:
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
