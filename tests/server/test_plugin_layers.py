"""Plugin layers run flat (plugin_layer.run_layers) behave as the onion they replaced, one
coroutine per layer, each calling the next: the same hooks run in the same order, on_error
reaches the same layers, the same outcome. Every combination of what three layers and the
graph can do is run both ways."""

from __future__ import annotations

import asyncio
import itertools
from functools import partial

import pytest

from gateway.errors import GatewayError, UpstreamError
from gateway.graph.context import RequestContext
from gateway.graph.pipeline import build_pipeline, stages
from gateway.graph.plugin_layer import PluginLayer, PluginLayers, _drop_native, failure
from gateway.providers.base import UpstreamResponse

# What one layer does: answers by itself, fails on the way in, on the way out, in its
# headers hook (a GatewayError or a plugin bug), or only watches. With or without on_error.
BEHAVIOURS = ("pass", "answer", "refuse_in", "bug_in", "bug_out", "refuse_out", "bug_headers")
GRAPH = ("ok", "upstream_error", "cancelled", "stream")


class Hooks:
    """A plugin's request and response middleware that writes what runs to a trail."""

    def __init__(self, name: str, behaviour: str, trail: list, with_on_error: bool):
        self.name, self.behaviour, self.trail = name, behaviour, trail
        if not with_on_error:
            self.on_error = None  # type: ignore[assignment]

    async def on_request(self, ctx):
        self.trail.append(f"{self.name}:in")
        if self.behaviour == "answer":
            return UpstreamResponse(200, body=b'{"from": "%s"}' % self.name.encode(),
                                    target=self.name)
        if self.behaviour == "refuse_in":
            raise GatewayError(403, f"refused by {self.name}")
        if self.behaviour == "bug_in":
            raise ValueError(f"bug in {self.name}")
        ctx.body = {**ctx.body, self.name: True}
        return None

    async def on_response(self, ctx, response):
        self.trail.append(f"{self.name}:out")
        if self.behaviour == "bug_out":
            raise KeyError(self.name)
        if self.behaviour == "refuse_out":
            raise GatewayError(502, f"answer refused by {self.name}")
        return response

    def on_chunk(self, ctx, chunk: bytes) -> bytes:
        self.trail.append(f"{self.name}:chunk")
        return chunk + self.name.encode()

    def on_stream_end(self, ctx) -> bytes:
        self.trail.append(f"{self.name}:end")
        return b""

    async def on_error(self, ctx, exc):
        self.trail.append(f"{self.name}:error:{type(exc).__name__}")

    def headers(self, ctx, response):
        self.trail.append(f"{self.name}:headers")
        if self.behaviour == "bug_headers":
            raise RuntimeError(self.name)
        return {f"x-{self.name}": "1"}


def layers_for(case: tuple, trail: list) -> list[PluginLayer]:
    out = []
    for i, (behaviour, with_on_error) in enumerate(case):
        hooks = Hooks(f"p{i}", behaviour, trail, with_on_error)
        out.append(PluginLayer(f"p{i}", hooks, hooks, hooks))
    return out


def graph_for(outcome: str, trail: list):
    async def graph(ctx: RequestContext) -> UpstreamResponse:
        trail.append(f"graph:{sorted(k for k in ctx.body if k.startswith('p'))}")
        if outcome == "upstream_error":
            raise UpstreamError(503, "server_error", "upstream down")
        if outcome == "cancelled":
            raise asyncio.CancelledError()
        if outcome == "stream":
            async def chunks():
                yield b"a"
                yield b"b"
            return UpstreamResponse(200, stream=chunks(), media_type="text/event-stream")
        return UpstreamResponse(200, body=b"{}", target="graph")

    return graph


class OnionLayer:
    """The reference: PluginLayer.__call__ as it was before the layers ran flat."""

    def __init__(self, layer: PluginLayer):
        self.layer = layer

    async def __call__(self, ctx, call_next):
        self = self.layer  # noqa: PLW0642  (the old method's body, unchanged)
        response = None
        if self.before is not None:
            body = ctx.body
            try:
                response = await self.before.on_request(ctx)
            except (GatewayError, UpstreamError):
                raise
            except Exception as exc:
                raise failure(self.name, exc) from exc
            if ctx.native is not None and ctx.send_native and ctx.body is not body:
                _drop_native(ctx, self.name)
        if response is None:
            if self.on_error is None:
                response = await call_next(ctx)
            else:
                try:
                    response = await call_next(ctx)
                except BaseException as exc:
                    await self._error(ctx, exc)
                    raise
        if response.stream is not None:
            if self.on_chunk is not None or self.on_stream_end is not None:
                response.stream = self._wrap(ctx, response.stream)
        elif self.on_response is not None:
            try:
                response = await self.on_response(ctx, response)
            except (GatewayError, UpstreamError):
                raise
            except Exception as exc:
                raise failure(self.name, exc) from exc
        if self.headers is not None:
            try:
                extra = self.headers(ctx, response)
            except (GatewayError, UpstreamError):
                raise
            except Exception as exc:
                raise failure(self.name, exc) from exc
            if extra:
                response.headers.update(extra)
        return response


def onion(layers: list[PluginLayer], inner):
    """One OnionLayer per layer, each nested in the one before (as build_pipeline folded them)."""
    handler = inner
    for layer in reversed(layers):
        handler = partial(OnionLayer(layer).__call__, call_next=handler)
    return handler


async def outcome_of(handler, trail: list) -> tuple:
    ctx = RequestContext(endpoint="chat", body={"model": "m"}, route="m")
    try:
        response = await handler(ctx)
    except (GatewayError, UpstreamError, asyncio.CancelledError) as exc:
        return ("raised", type(exc).__name__, str(exc), tuple(trail))
    streamed = b""
    if response.stream is not None:
        streamed = b"".join([chunk async for chunk in response.stream])
    return ("answered", response.target, response.body, streamed, dict(response.headers),
            tuple(trail))


CASES = list(itertools.product(itertools.product(BEHAVIOURS, (True, False)), repeat=3))


@pytest.mark.parametrize("outcome", GRAPH)
async def test_flat_layers_do_what_the_onion_does(outcome):
    for case in CASES:
        onion_trail: list = []
        expected = await outcome_of(
            onion(layers_for(case, onion_trail), graph_for(outcome, onion_trail)), onion_trail)
        flat_trail: list = []
        flat = build_pipeline(layers_for(case, flat_trail), graph_for(outcome, flat_trail))
        assert await outcome_of(flat, flat_trail) == expected, (case, outcome)


async def test_an_interrupted_on_error_is_what_the_outer_layers_see():
    """An on_error that is itself cancelled: the layers further out get the cancellation,
    as they would in the onion."""
    trail: list = []

    class Interrupted(Hooks):
        async def on_error(self, ctx, exc):
            trail.append(f"{self.name}:error:{type(exc).__name__}")
            raise asyncio.CancelledError()

    def layers() -> list[PluginLayer]:
        outer = Hooks("p0", "pass", trail, True)
        inner = Interrupted("p1", "pass", trail, True)
        return [PluginLayer("p0", outer, outer), PluginLayer("p1", inner, inner)]

    result = await outcome_of(build_pipeline(layers(), graph_for("upstream_error", trail)), trail)
    assert result[:2] == ("raised", "CancelledError")
    assert result[-1][-2:] == ("p1:error:UpstreamError", "p0:error:CancelledError")
    trail.clear()
    assert await outcome_of(onion(layers(), graph_for("upstream_error", trail)), trail) == result


def test_consecutive_plugin_layers_are_one_stage():
    class Other:
        name = "other"

        async def __call__(self, ctx, call_next):
            return await call_next(ctx)

    a, b, c = (PluginLayer(n, None, None) for n in "abc")
    other = Other()
    merged = stages([a, b, other, c])
    assert [type(s) for s in merged] == [PluginLayers, Other, PluginLayers]
    assert merged[0].layers == (a, b) and merged[2].layers == (c,)
