"""The middleware chain every request passes through: auth, then plugins, then the graph.

A middleware is an object with a ``name`` and ``async __call__(ctx, call_next)``. It may
- read or change ``ctx`` (the body, metadata) before calling ``call_next(ctx)``;
- answer by itself without calling ``call_next`` (a cache hit, a refusal), returning an
  UpstreamResponse or raising GatewayError;
- wrap what ``call_next`` returns, including ``response.stream`` chunk by chunk.

The chain is folded once, when a config is compiled: a request costs one call per middleware,
nothing more.
"""

from __future__ import annotations

from functools import partial
from typing import Awaitable, Callable, Protocol, Sequence

from ..providers.base import UpstreamResponse
from .context import RequestContext

Handler = Callable[[RequestContext], Awaitable[UpstreamResponse]]


class Middleware(Protocol):
    name: str

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> UpstreamResponse: ...


async def call_graph(ctx: RequestContext) -> UpstreamResponse:
    """The end of every chain: the route's compiled node."""
    return await ctx.node.handle(ctx)


def build_pipeline(chain: Sequence[Middleware], inner: Handler = call_graph) -> Handler:
    handler = inner
    for middleware in reversed(chain):
        handler = partial(middleware.__call__, call_next=handler)
    return handler
