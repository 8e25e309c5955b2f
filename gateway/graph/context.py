"""Per-request state that travels through middleware and nodes. Mutable, never shared."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

_rng = random.Random()


@dataclass(slots=True)
class Attempt:
    """One upstream call: which target, what came back, how long it took."""

    target: str
    status: int
    error_class: str | None
    latency_ms: float


@dataclass(slots=True)
class RequestContext:
    """Everything a request carries through the gateway.

    ``endpoint`` is one of chat, completions, embeddings. ``body`` is the client's JSON body;
    nodes copy it before changing it, so a fallback always starts from what the client sent.
    """

    endpoint: str
    body: dict[str, Any]
    route: str
    request_id: str = ""
    stream: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    node: Any = None  # the route's compiled node, set once the route is known
    files: tuple = ()  # providers.base.Upload: files of a multipart request
    metadata: dict[str, Any] = field(default_factory=dict)
    key_name: str | None = None
    key: Any = None  # graph.KeySpec of the caller, once authenticated
    target: str = ""  # provider/model that answered, once one has
    upstream_ms: float = 0.0  # time spent waiting on upstreams, every attempt included
    backoff_ms: float = 0.0  # time spent in deliberate retry backoff sleeps
    deadline: float | None = None  # time.monotonic() value; None means no request deadline
    retry_budget: Any = None  # policies.RetryBudget of the route, when it has one
    rng: random.Random = _rng
    attempts: list[Attempt] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    # Free-form notes from middleware and nodes (e.g. the cache status), for headers and logs.
    notes: dict[str, Any] = field(default_factory=dict)

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()
