"""The dispatcher that plugins' front doors (hookspecs.FrontDoor: Anthropic's Messages API,
rerank, ...) hand their requests to: the same path as the OpenAI endpoints (the caller's key,
the graph snapshot, the route, the middleware chain with its limits, budgets and usage, the
nodes with their retries and fallbacks, the x-gateway-* headers, the request log), with the
door translating the body on the way in and the answer and errors on the way out.

A plugin route finds it in ``request.scope["gateway.dispatch"]`` (plugin_routes.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import GatewayError, UpstreamError
from ..graph.context import RequestContext
from ..graph.graph import KeySpec, RoutingGraph
from ..hookspecs import KEY_SCOPE, FrontDoor, NativeBody, Routed
from .errors import upstream_failure
from .loops import check_hops
from .openai_api import (
    _account, _deadline, _metadata, _model, _request_id, _routes_for, _stream_flag,
    _unknown_model, guard_stream, parse_json, read_bytes,
)
from .reload import GraphHolder
from .request_end import Ending, finish, trace_context
from .request_shape import check_body



@dataclass(slots=True)
class Prepared:
    """A front door's request, read, checked and routed, before the graph runs it."""

    graph: RoutingGraph
    key: KeySpec | None
    routed: Routed


# A door's own routing (passthrough): the request, the graph, the key and the raw body in,
# where it goes out (GatewayError when it goes nowhere).
RouteFunction = Callable[[Request, RoutingGraph, "KeySpec | None", bytes], Routed]


class Dispatcher:
    # For a door's route function: the raw body as a JSON object (400 for anything else).
    json_object = staticmethod(parse_json)

    def __init__(self, holder: GraphHolder):
        self.holder = holder

    def graph(self) -> RoutingGraph:
        """The running config."""
        return self.holder.current

    async def prepare(self, request: Request, door: FrontDoor,
                      route: RouteFunction | None = None) -> Prepared:
        """Identify the caller (unless the server did), read the body, and route it: by its
        model through the door's translation, or by ``route``; GatewayError for anything
        wrong."""
        graph = self.holder.current
        key = request.scope[KEY_SCOPE] if KEY_SCOPE in request.scope else (
            graph.identify(request.headers) if graph.identify is not None else None)
        check_hops(request.headers)
        raw = await read_bytes(request, graph.settings.max_body)
        if route is not None:
            return Prepared(graph, key, route(request, graph, key, raw))
        body, native = door.inbound(parse_json(raw), request.headers)
        return Prepared(graph, key, self.by_model(graph, key, body, native))

    @staticmethod
    def by_model(graph: RoutingGraph, key: KeySpec | None, body: dict,
                 native: NativeBody | None = None) -> Routed:
        """Where an internal body goes by its model (a route name); 404 naming the routes
        ``key`` may use when none has that name. A door's route function may end with it
        (the Responses door: it needs the key to read the conversation first)."""
        model = _model(body)
        found = graph.routes.get(model)
        if found is None:
            raise _unknown_model(model, _routes_for(graph, key))
        return Routed(body, model, found.node, native, found.retry_budget)

    async def __call__(self, request: Request, door: FrontDoor,
                       route: RouteFunction | None = None) -> Response:
        started = time.monotonic()
        graph = self.holder.current
        request_id = _request_id(request)
        headers = {"x-request-id": request_id, "x-gateway-config-version": str(graph.version)}
        ctx: RequestContext | None = None
        try:
            prepared = await self.prepare(request, door, route)
            graph, routed = prepared.graph, prepared.routed
            headers["x-gateway-route"] = routed.route
            check_body(routed.body, door.endpoint)
            ctx = RequestContext(
                endpoint=door.endpoint, body=routed.body, route=routed.route,
                request_id=request_id, stream=_stream_flag(routed.body, door.endpoint),
                headers=request.headers, metadata=_metadata(request),
                deadline=_deadline(request, graph.request_timeout), node=routed.node,
                retry_budget=routed.retry_budget, key=prepared.key, native=routed.native,
                **trace_context(request.headers, graph.trace_ratio))
            if routed.retry_budget is not None:
                routed.retry_budget.state.request(ctx.started)
            upstream = await graph.handler(ctx)
        except GatewayError as err:
            overhead = _account(headers, started, ctx)
            finish(graph, ctx, Ending(door.name, request_id, err.status, started,
                                      headers.get("x-gateway-route", ""), error=err.message,
                                      overhead_ms=overhead))
            return Response(door.error(err.status, err.message, err.openai_body()), status_code=err.status,
                            headers={**headers, **err.headers}, media_type="application/json")
        except UpstreamError as err:
            assert ctx is not None  # only the chain raises UpstreamError, and ctx is built first
            graph.scrubber.error(err)
            status, content, extra = upstream_failure(err, ctx)
            extra.pop("Content-Type", None)
            headers.update(extra)
            headers["x-gateway-attempts"] = str(len(ctx.attempts))
            headers["x-gateway-target"] = err.target
            overhead = _account(headers, started, ctx)
            finish(graph, ctx, Ending(door.name, request_id, status, started, target=err.target,
                                      error=err.message, overhead_ms=overhead))
            return Response(door.error(status, _message_of(content, err.message), content),
                            status_code=status, headers=headers, media_type="application/json")
        if upstream.headers:  # added by middleware; the gateway's own headers win
            headers = {**upstream.headers, **headers}
        headers["x-gateway-target"] = upstream.target
        headers["x-gateway-attempts"] = str(len(ctx.attempts))
        overhead = _account(headers, started, ctx)
        ending = Ending(door.name, request_id, upstream.status, started, target=upstream.target,
                        cache=headers.get("x-gateway-cache"), overhead_ms=overhead)
        if upstream.stream is not None:
            headers["Cache-Control"] = "no-cache"
            sse = upstream.media_type.startswith("text/event-stream")
            return StreamingResponse(
                guard_stream(door.stream(ctx, upstream), ctx, ending, graph, sse=sse,
                             error_event=door.stream_error),
                status_code=upstream.status, headers=headers, media_type=upstream.media_type)
        answer = door.answer(ctx, upstream)
        ending.first_byte, ending.response_body = time.monotonic(), answer
        finish(graph, ctx, ending)
        return Response(answer, status_code=upstream.status, headers=headers,
                        media_type=upstream.media_type)


def _message_of(content: bytes, fallback: str) -> str:
    """The message of an OpenAI-shaped error body (the gateway's, or an upstream's)."""
    try:
        error = orjson.loads(content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return fallback
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return fallback
