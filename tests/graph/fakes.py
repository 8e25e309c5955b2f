"""A scripted provider for node tests: replays outcomes, records every call."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Iterable, Union

from gateway.errors import UpstreamError, classify_status
from gateway.graph.nodes import TargetNode
from gateway.graph.policies import (
    DEFAULT_BREAKER_ON,
    DEFAULT_RETRY_ON,
    BreakerPolicy,
    RetryPolicy,
    StatusMatcher,
)
from gateway.state.target import ProviderHealth, TargetState
from gateway.providers.base import (
    ClientPool,
    Provider,
    ProviderSpec,
    Timeouts,
    UpstreamRequest,
    UpstreamResponse,
)


@dataclass
class Delay:
    """Wait ``seconds`` inside the call, then play ``then`` (a 200 answer when None)."""

    seconds: float
    then: Union[UpstreamResponse, UpstreamError, None] = None


Step = Union[UpstreamResponse, UpstreamError, Delay]


@dataclass
class Call:
    """One recorded send(): the model and a deep copy of the body as it was sent."""

    model: Any
    body: dict
    sent: dict  # the very object handed to the provider
    endpoint: str
    stream: bool
    timeouts: Timeouts


def ok(text: str = "ok", status: int = 200) -> UpstreamResponse:
    return UpstreamResponse(status, body=text.encode())


def fail(status: int, error_class: str | None = None, *, retry_after: float | None = None,
         from_upstream: bool = True) -> UpstreamError:
    kind = error_class or classify_status(status)
    return UpstreamError(status, kind, f"upstream said {status}", retry_after=retry_after,
                         from_upstream=from_upstream)


def timeout_error() -> UpstreamError:
    return UpstreamError(408, "timeout", "no answer in time", from_upstream=False)


class ScriptExhausted(AssertionError):
    pass


class FakeProvider(Provider):
    """Replays ``script`` one step per send(); raises ScriptExhausted when it runs out."""

    def __init__(self, script: Iterable[Step] = (), name: str = "fake"):
        spec = ProviderSpec(
            name=name,
            type="mock",
            base_url="fake://",
            api_key=None,
            headers=MappingProxyType({}),
            max_connections=1,
            options=MappingProxyType({}),
        )
        super().__init__(spec, ClientPool())
        self.script: list[Step] = list(script)
        self.calls: list[Call] = []

    @property
    def models(self) -> list[Any]:
        return [c.model for c in self.calls]

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.calls.append(
            Call(
                model=request.body.get("model"),
                body=copy.deepcopy(request.body),
                sent=request.body,
                endpoint=request.endpoint,
                stream=request.stream,
                timeouts=request.timeouts,
            )
        )
        if not self.script:
            raise ScriptExhausted(f"{self.name}: no step left for call {len(self.calls)}")
        step = self.script.pop(0)
        if isinstance(step, Delay):
            await asyncio.sleep(step.seconds)
            step = step.then if step.then is not None else ok()
        if isinstance(step, BaseException):
            raise step
        return step


TIMEOUTS = Timeouts(connect=10.0, first_byte=60.0, idle=60.0, total=60.0)


def retry_policy(attempts: int = 1, on=DEFAULT_RETRY_ON, *, backoff: str = "constant",
                 base: float = 0.0, max: float = 8.0, jitter: bool = False,
                 respect_retry_after: bool = True) -> RetryPolicy:
    return RetryPolicy(attempts, StatusMatcher.of(on), backoff, base, max, jitter,
                       respect_retry_after)


NO_BREAKER = BreakerPolicy(False, 5, 0.5, 10, 60.0, 30.0, 1, StatusMatcher.of(DEFAULT_BREAKER_ON))


def breaker_policy(**overrides) -> BreakerPolicy:
    """An enabled breaker with the built-in defaults, fields overridable."""
    values = dict(enabled=True, failure_threshold=5, failure_rate=0.5, min_requests=10,
                  window=60.0, cooldown=30.0, half_open_requests=1,
                  on=StatusMatcher.of(DEFAULT_BREAKER_ON))
    values.update(overrides)
    return BreakerPolicy(**values)


def target(provider: Provider, model: str = "m", *, retry: RetryPolicy | None = None,
           timeouts: Timeouts = TIMEOUTS, override_params=None, path: str = "",
           breaker: BreakerPolicy = NO_BREAKER, state: TargetState | None = None,
           health: ProviderHealth | None = None) -> TargetNode:
    return TargetNode(
        path=path or f"$.test.{provider.name}.{model}",
        provider=provider,
        model=model,
        timeouts=timeouts,
        retry=retry or retry_policy(),
        breaker=breaker,
        state=state or TargetState(f"{provider.name}/{model}"),
        health=health or ProviderHealth(),
        override_params=override_params if override_params is not None else MappingProxyType({}),
    )
