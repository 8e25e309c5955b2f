"""The contracts the layers agree on: routing nodes, providers, middleware and the clock.

The bottom layer: it imports no other gateway module at run time (the names below
``TYPE_CHECKING`` are for annotations only), so every layer may depend on it.

A routing graph is a tree of nodes. Each node names its ``kind`` (one of ``NODE_KINDS``) and
its ``children()``; ``walk()`` visits a tree depth first. Code that looks at a graph from
outside (health, metrics, the dry run) goes through these three instead of testing classes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Awaitable, Callable, Collection, Iterator, Protocol

if TYPE_CHECKING:
    from .graph.context import RequestContext
    from .providers.base import ProviderSpec, UpstreamRequest, UpstreamResponse

# The node kinds a config writes (the key that makes a mapping a node), in the order the
# compiler looks for them. ``route`` is a reference to another route.
CONFIG_NODE_KINDS = ("target", "route", "fallback", "loadbalance", "conditional", "canary")
# Every kind of node a compiled graph holds: those, ``deadline``, which the compiler wraps
# around a strategy node that has its own ``timeout``, and ``stream_recovery``, which it wraps
# around the node of a route with `stream_recovery` (graph/stream_recovery.py).
NODE_KINDS = CONFIG_NODE_KINDS + ("deadline", "stream_recovery")


class Node(Protocol):
    """One node of a compiled routing graph (graph/nodes.py)."""

    @property
    def kind(self) -> str:
        """One of NODE_KINDS."""

    @property
    def path(self) -> str:
        """The node's JSON path in the config, for logs and errors."""

    def children(self) -> tuple[Node, ...]:
        """The nodes this one may hand a request to, in config order."""

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        """Answer the request, or raise UpstreamError."""


def walk(node: Node, *, stop_at: Collection[str] = ()) -> Iterator[Node]:
    """``node`` and every node below it, depth first, in config order. Nodes whose kind is in
    ``stop_at`` are visited but not entered (``stop_at=("route",)``: stay within one route)."""
    yield node
    if node.kind in stop_at:
        return
    for child in node.children():
        yield from walk(child, stop_at=stop_at)


class Provider(Protocol):
    """What the graph needs of a provider adapter (providers/base.py implements it)."""

    name: str
    spec: ProviderSpec
    capabilities: frozenset[str]

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Call the upstream; raise UpstreamError on any failure."""

    def pool_key(self) -> tuple[str, str, int]:
        """Providers with the same key share one HTTP session across reloads."""


Handler = Callable[["RequestContext"], Awaitable["UpstreamResponse"]]


class Middleware(Protocol):
    """One layer of the request pipeline (graph/pipeline.py folds them)."""

    @property
    def name(self) -> str:
        """Names the middleware in logs and the dry run."""

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> UpstreamResponse:
        """Change the request, answer it, or call on and change the answer."""


class Clock(Protocol):
    """Where time comes from, so that tests can drive it."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (durations, deadlines)."""

    def time(self) -> float:
        """Seconds since the epoch (timestamps)."""


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


SYSTEM_CLOCK = SystemClock()
