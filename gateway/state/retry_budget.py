"""Retry budget of one route: retries may not exceed a share of its requests in a sliding
window, so an outage does not turn into a retry storm (Envoy's and gRPC's retry budgets)."""

from __future__ import annotations

from collections import deque


class RetryBudgetState:
    def __init__(self) -> None:
        self.requests: deque[float] = deque()
        self.retries: deque[float] = deque()
        self.denied = 0

    def request(self, now: float) -> None:
        self.requests.append(now)

    def try_retry(self, ratio: float, window: float, min_retries: int, now: float) -> bool:
        horizon = now - window
        for q in (self.requests, self.retries):
            while q and q[0] < horizon:
                q.popleft()
        if len(self.retries) >= max(min_retries, ratio * len(self.requests)):
            self.denied += 1
            return False
        self.retries.append(now)
        return True
