"""Per-arm counters of one canary node, and its automatic rollback.

Keyed by the canary's route, path and config digest: a reload that leaves the canary as it is
keeps its counters (and a rollback); any change to it starts afresh.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ..events import CANARY_ROLLED_BACK, emit



class ArmStats:
    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies: deque[float] = deque(maxlen=2048)
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2) if ordered else None

        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.errors / self.requests, 4) if self.requests else 0.0,
            "latency_p50_ms": pct(0.5),
            "latency_p95_ms": pct(0.95),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class CanaryState:
    def __init__(self, label: str) -> None:
        self.label = label
        self.arms = {"stable": ArmStats(), "canary": ArmStats()}
        self.rolled_back = False

    def record(self, arm: str, failed: bool, ms: float, usage: dict[str, Any] | None,
               error_rate: float | None, min_requests: int) -> None:
        stats = self.arms[arm]
        stats.requests += 1
        stats.errors += failed
        stats.latencies.append(ms)
        if usage:
            stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            stats.completion_tokens += int(usage.get("completion_tokens") or 0)
        if (arm == "canary" and error_rate is not None and not self.rolled_back
                and stats.requests >= min_requests and stats.errors / stats.requests >= error_rate):
            self.rolled_back = True
            emit(CANARY_ROLLED_BACK, self.label, error_rate=round(stats.errors / stats.requests, 4),
                 requests=stats.requests, threshold=error_rate)
