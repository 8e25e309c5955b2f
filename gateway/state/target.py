"""Runtime state of one upstream target (provider + base_url + model): circuit breaker,
requests in flight, latency EWMA, counts. Shared by every node that names the same target,
kept across reloads while any node still does.

The policy that decides is passed in by the node on each call, so the state survives a reload
that changes thresholds.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from ..events import CIRCUIT_OPEN, emit
from ..logs import get_logger

log = get_logger("gateway.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class BreakerPolicy(Protocol):
    """What the breaker reads of its policy (graph.policies.BreakerPolicy, frozen)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def failure_threshold(self) -> int: ...
    @property
    def failure_rate(self) -> float: ...
    @property
    def min_requests(self) -> int: ...
    @property
    def window(self) -> float: ...
    @property
    def cooldown(self) -> float: ...
    @property
    def half_open_requests(self) -> int: ...


@dataclass(slots=True)
class Outcome:
    at: float
    failed: bool


class TargetState:
    EWMA_ALPHA = 0.3

    def __init__(self, label: str):
        self.label = label
        self.state = CLOSED
        self.window: deque[Outcome] = deque()
        self.window_failures = 0
        self.opened_at = 0.0
        self.probes = 0
        self.in_flight = 0
        self.ewma_ms: float | None = None
        self.requests = 0
        self.errors = 0
        self.by_route: dict[str, list[int]] = {}  # route -> [requests, errors]
        self.transitions = {OPEN: 0, HALF_OPEN: 0, CLOSED: 0}

    # -- breaker ---------------------------------------------------------------------------

    def available(self, policy: BreakerPolicy, now: float) -> bool:
        """Would a request be let through now? (No side effects: for load balancers.)"""
        if not policy.enabled or self.state == CLOSED:
            return True
        if self.state == OPEN:
            return now - self.opened_at >= policy.cooldown
        return self.probes < policy.half_open_requests

    def allow(self, policy: BreakerPolicy, now: float) -> bool:
        """Let one request through, or not. Moves open to half-open after the cooldown."""
        if not policy.enabled or self.state == CLOSED:
            return True
        if self.state == OPEN:
            if now - self.opened_at < policy.cooldown:
                return False
            self._move(HALF_OPEN, "cooldown over: probing")
        if self.probes >= policy.half_open_requests:
            return False
        self.probes += 1
        return True

    def record(self, policy: BreakerPolicy, failed: bool, now: float, route: str = "",
               breaker: bool = True) -> None:
        """Count one request's outcome; with ``breaker`` False only in the counts, not in the
        breaker's window (an upstream failure another request already recorded)."""
        self.requests += 1
        self.errors += failed
        counts = self.by_route.get(route)
        if counts is None:
            counts = self.by_route[route] = [0, 0]
        counts[0] += 1
        counts[1] += failed
        if not policy.enabled or not breaker:
            return
        if self.state == HALF_OPEN:
            self.probes = max(0, self.probes - 1)
            if failed:
                self.opened_at = now
                self._move(OPEN, "probe failed")
            else:
                self._reset_window()
                self._move(CLOSED, "probe succeeded")
            return
        if self.state == OPEN:  # an answer from before the circuit opened
            return
        self.window.append(Outcome(now, failed))
        self.window_failures += failed
        self._prune(policy, now)
        total = len(self.window)
        if self.window_failures >= policy.failure_threshold or (
            total >= policy.min_requests and self.window_failures / total >= policy.failure_rate
        ):
            self.opened_at = now
            self._move(OPEN, f"{self.window_failures} failures in {total} requests")

    def _prune(self, policy: BreakerPolicy, now: float) -> None:
        horizon = now - policy.window
        while self.window and self.window[0].at < horizon:
            self.window_failures -= self.window.popleft().failed

    def _reset_window(self) -> None:
        self.window.clear()
        self.window_failures = 0

    def _move(self, state: str, why: str) -> None:
        self.state = state
        self.transitions[state] += 1
        event = log.warning if state == OPEN else log.info
        event(f"circuit_{state}", target=self.label, reason=why)
        if state == OPEN:
            emit(CIRCUIT_OPEN, self.label, reason=why)

    # -- load ------------------------------------------------------------------------------

    def started(self) -> float:
        self.in_flight += 1
        return time.monotonic()

    def finished(self, ms: float) -> None:
        """An answer (for streams: its first byte) came after ``ms``: update the EWMA."""
        self.ewma_ms = ms if self.ewma_ms is None else (
            self.EWMA_ALPHA * ms + (1 - self.EWMA_ALPHA) * self.ewma_ms)

    def done(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def snapshot(self, policy: BreakerPolicy, now: float,
                 route: str | None = None) -> dict[str, Any]:
        """The target's state; with ``route``, its requests and errors are that route's only
        (the breaker, window, load and latency stay the target's, shared by its routes)."""
        self._prune(policy, now)
        total = len(self.window)
        requests, errors = (self.requests, self.errors) if route is None else \
            self.by_route.get(route, (0, 0))
        return {
            "breaker": self.state if policy.enabled else "disabled",
            "in_flight": self.in_flight,
            "ewma_ms": None if self.ewma_ms is None else round(self.ewma_ms, 2),
            "requests": requests,
            "errors": errors,
            "target_requests": self.requests,
            "target_errors": self.errors,
            "window_requests": total,
            "window_error_rate": round(self.window_failures / total, 4) if total else 0.0,
            "transitions": dict(self.transitions),
        }


class ProviderHealth:
    """Result of a provider's active health checks (healthy until a check says otherwise)."""

    def __init__(self) -> None:
        self.healthy = True
        self.checked_at: float | None = None
        self.error: str | None = None
        self.consecutive_failures = 0
