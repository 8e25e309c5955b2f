"""The middleware chain every request passes through: auth, then plugins, then the graph.

A middleware (``types.Middleware``) is an object with a ``name`` and
``async __call__(ctx, call_next)``. It may
- read or change ``ctx`` (the body, metadata) before calling ``call_next(ctx)``;
- answer by itself without calling ``call_next`` (a cache hit, a refusal), returning an
  UpstreamResponse or raising GatewayError;
- wrap what ``call_next`` returns, including ``response.stream`` chunk by chunk.

The chain is folded once, when a config is compiled: a request costs one call per middleware,
nothing more; consecutive plugin layers (every layer a config compiles to) are one call
together (plugin_layer.PluginLayers).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Coroutine, Sequence

from ..providers.base import UpstreamResponse
from ..types import Handler, Middleware
from .context import RequestContext
from .plugin_layer import PluginLayer, PluginLayers

__all__ = ["Handler", "Middleware", "build_pipeline", "call_graph"]


def call_graph(ctx: RequestContext) -> Coroutine[Any, Any, UpstreamResponse]:
    """The end of every chain: the route's compiled node (its coroutine, awaited by the
    caller: no frame of its own)."""
    assert ctx.node is not None, "the server sets ctx.node before calling the chain"
    return ctx.node.handle(ctx)


def build_pipeline(chain: Sequence[Middleware], inner: Handler = call_graph) -> Handler:
    handler = inner
    for middleware in reversed(stages(chain)):
        handler = partial(middleware.__call__, call_next=handler)
    return handler


def stages(chain: Sequence[Middleware]) -> list[Middleware]:
    """The chain with each run of consecutive PluginLayers merged into one PluginLayers."""
    out: list[Middleware] = []
    run: list[PluginLayer] = []
    for middleware in chain:
        if isinstance(middleware, PluginLayer):
            run.append(middleware)
            continue
        if run:
            out.append(PluginLayers(run))
            run = []
        out.append(middleware)
    if run:
        out.append(PluginLayers(run))
    return out
