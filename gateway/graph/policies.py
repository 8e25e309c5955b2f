"""Frozen retry, breaker and status-matching policies, fully resolved at compile time."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable

from ..errors import UpstreamError
from ..state.retry_budget import RetryBudgetState

# 529: Anthropic's "overloaded".
DEFAULT_RETRY_ON = (429, 500, 502, 503, 504, 529, "timeout", "connection")
DEFAULT_FALLBACK_ON = DEFAULT_RETRY_ON


@dataclass(frozen=True, slots=True)
class StatusMatcher:
    """Which failures a policy acts on: upstream statuses and named error classes."""

    codes: frozenset[int]
    classes: frozenset[str]

    @classmethod
    def of(cls, items: Iterable[int | str]) -> StatusMatcher:
        items = tuple(items)
        return cls(
            frozenset(i for i in items if isinstance(i, int)),
            frozenset(i for i in items if isinstance(i, str)),
        )

    def matches(self, err: UpstreamError) -> bool:
        if err.error_class in self.classes:
            return True
        return err.from_upstream and err.status in self.codes

    def describe(self) -> list[int | str]:
        out: list[int | str] = [*sorted(self.codes), *sorted(self.classes)]
        return out


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int
    on: StatusMatcher
    backoff: str  # exponential | constant
    base: float
    max: float
    jitter: bool
    respect_retry_after: bool

    def should_retry(self, err: UpstreamError, attempt: int) -> bool:
        return attempt < self.attempts and self.on.matches(err)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None when waiting is pointless
        (the upstream asked for longer than ``max``: let a fallback take over instead)."""
        if retry_after is not None and self.respect_retry_after:
            return retry_after if retry_after <= self.max else None
        if self.backoff == "constant":
            ceiling = min(self.base, self.max)
        else:
            ceiling = min(self.max, self.base * (2 ** (attempt - 1)))
        return rng.uniform(0, ceiling) if self.jitter else ceiling



DEFAULT_BREAKER_ON = (500, 502, 503, 504, 529, "timeout", "connection")


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    enabled: bool
    failure_threshold: int
    failure_rate: float
    min_requests: int
    window: float
    cooldown: float
    half_open_requests: int
    on: StatusMatcher


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """A route's retry budget: the policy and its runtime state (a registry handle)."""

    ratio: float
    window: float
    min_retries: int
    state: RetryBudgetState  # runtime state, a registry handle

    def try_retry(self, now: float) -> bool:
        return self.state.try_retry(self.ratio, self.window, self.min_retries, now)
