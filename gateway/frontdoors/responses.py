"""OpenAI's Responses API in front of every provider: POST /v1/responses (whole or streamed),
GET /v1/responses/{id}, DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items.

A request is routed by its model like any other, through the dispatcher (keys, limits,
budgets, usage, retries, fallbacks, the request log). Before that, the door reads the
conversation its ``previous_response_id`` continues (the caller's own: another key's is a
404) from the store, so every target gets the whole history. An ``openai`` target gets the
Responses request itself (openai_responses.native_body) and answers in that API; any other
gets the chat translation and its answer is turned back. Answers are stored (unless
``store: false``) with the request's input items, per key, for ``responses.retention``.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..errors import GatewayError
from ..graph.context import RequestContext
from ..graph.graph import KeySpec, RoutingGraph
from ..hookspecs import DISPATCH_SCOPE, KEY_SCOPE, Routed
from ..graph.nodes import TargetNode
from ..providers.base import NativeBody, UpstreamResponse
from ..providers.openai import RESPONSES_TYPES
from ..providers.sse import SSEFramer, parse_event
from ..store.responses_db import Stored
from ..types import walk
from . import openai_responses as wire
from .openai_shaped import OpenAIShapedDoor
from .response_store import ResponseStore
from .routes import FrontDoorRoute

if TYPE_CHECKING:
    from ..middleware.limits import Limits

LIFECYCLE = frozenset({"response.created", "response.in_progress", "response.completed",
                       "response.incomplete", "response.failed"})
FINAL = frozenset({"response.completed", "response.incomplete"})
MAX_PAGE = 100
# Events sent so far in this request's stream: the sequence_number of its error event, if any.
_SENT: ContextVar[int] = ContextVar("responses_sent", default=0)


@dataclass(frozen=True, slots=True)
class ResponsesNative(NativeBody):
    """The native body, and what the door needs to answer: the checked request and the id
    a translated answer gets."""

    request: wire.Request | None = None
    id: str = ""


def owner_of(key: KeySpec | None) -> str:
    """Whose responses: the key's SHA-256 (unique to the key, no secret), '' without keys;
    a plugin authenticator's key without a hash by its name (as files.store.Owner), so its
    keys never share one owner."""
    if key is None:
        return ""
    return key.sha256 or f"name:{key.name}"


def _not_found(id: str) -> GatewayError:
    return GatewayError(404, f"No response found with id '{id}'.", code="not_found", param="id")


class ResponsesDoor(OpenAIShapedDoor):
    name = "responses"
    endpoint = "chat"

    def __init__(self, store: ResponseStore, calls: "Limits | None" = None):
        self.store = store
        self.calls = calls  # a stored response's call counts against the request limits

    # -- in ------------------------------------------------------------------------------

    def route(self, request: Request, graph: RoutingGraph, key: KeySpec | None,
              raw: bytes) -> Routed:
        """The dispatcher's route function: the request checked, its conversation read
        (404 when ``previous_response_id`` is not one of the caller's), translated, and
        routed by its model."""
        dispatch = request.scope[DISPATCH_SCOPE]
        checked = wire.parse(dispatch.json_object(raw))
        history: list[dict[str, Any]] = []
        if checked.previous_response_id is not None:
            chain = self.store.chain(owner_of(key), checked.previous_response_id)
            if not chain:
                raise GatewayError(404, "Previous response with id "
                                   f"'{checked.previous_response_id}' not found.",
                                   code="previous_response_not_found",
                                   param="previous_response_id")
            for row in chain:
                history.extend(orjson.loads(row.input))
                history.extend(orjson.loads(row.response).get("output") or ())
        try:
            chat = wire.to_chat(checked, history)
        except GatewayError:
            if not _only_native_targets(graph, checked.body["model"]):
                raise
            chat = wire.to_chat(checked, history, strict=False)
        native = ResponsesNative(wire.API, wire.native_body(checked, history),
                                 request=checked, id=wire.new_id("resp"))
        routed: Routed = dispatch.by_model(graph, key, chat, native)
        return routed

    def inbound(self, body: dict[str, Any], headers: Mapping[str, str]
                ) -> tuple[dict[str, Any], NativeBody | None]:
        """Without the caller's key (``dispatch.prepare`` by a plugin): no history."""
        checked = wire.parse(body)
        if checked.previous_response_id is not None:
            raise GatewayError(400, "previous_response_id needs the Responses route "
                               "(POST /v1/responses)", param="previous_response_id")
        return wire.to_chat(checked, []), ResponsesNative(
            wire.API, wire.native_body(checked, []), request=checked, id=wire.new_id("resp"))

    # -- out -----------------------------------------------------------------------------

    def answer(self, ctx: RequestContext, response: UpstreamResponse) -> bytes:
        request, id = _request_of(ctx)
        value = response.json()
        if not isinstance(value, dict):
            return response.body or b""
        if response.api == wire.API:
            answer = _as_sent(value, request, id)
        else:
            answer = wire.from_chat(value, request, id, ctx.route)
        self._keep(ctx, answer)
        return orjson.dumps(answer)

    async def stream(self, ctx: RequestContext, response: UpstreamResponse
                     ) -> AsyncIterator[bytes]:
        assert response.stream is not None
        request, id = _request_of(ctx)
        _SENT.set(0)
        events: NativeRelay | wire.StreamToResponses = NativeRelay(request, id) \
            if response.api == wire.API else wire.StreamToResponses(request, id, ctx.route)
        async for chunk in response.stream:
            out = events.feed(chunk)
            _SENT.set(events.sequence)
            if out:
                yield out
        end = events.finish()
        if events.response is not None:  # stored before the client can read the last event
            self._keep(ctx, events.response)
        if end:
            yield end

    def stream_error(self, status: int, message: str) -> bytes:
        return wire.error_event(status, message, "server_error" if status >= 500 else None,
                                _SENT.get())

    def _keep(self, ctx: RequestContext, answer: dict[str, Any]) -> None:
        request, _ = _request_of(ctx)
        if request.store and isinstance(answer.get("id"), str):
            self.store.put(answer["id"], owner_of(ctx.key), request.previous_response_id,
                           orjson.dumps(request.input), orjson.dumps(answer))

    # -- stored responses ----------------------------------------------------------------

    async def retrieve(self, request: Request) -> Response:
        return await self._answering(request, self._retrieve)

    async def delete(self, request: Request) -> Response:
        return await self._answering(request, self._delete)

    async def input_items(self, request: Request) -> Response:
        return await self._answering(request, self._input_items)

    async def _retrieve(self, request: Request, owner: str, id: str) -> Any:
        if request.query_params.get("stream") in ("true", "1"):
            raise GatewayError(400, "stored responses cannot be streamed again", param="stream")
        return self._stored(owner, id).response

    async def _delete(self, request: Request, owner: str, id: str) -> Any:
        if not await self.store.delete(owner, id):
            raise _not_found(id)
        return {"id": id, "object": "response.deleted", "deleted": True}

    async def _input_items(self, request: Request, owner: str, id: str) -> Any:
        """The request's own input items (not the history it continued), newest first unless
        ``order=asc``, ``limit`` (1..100, default 20) at a time after the item ``after``."""
        return _page(orjson.loads(self._stored(owner, id).input), request.query_params)

    def _stored(self, owner: str, id: str) -> Stored:
        row = self.store.get(owner, id)
        if row is None:
            raise _not_found(id)
        return row

    async def _answering(self, request: Request, action: Callable[
            [Request, str, str], Awaitable[Any]]) -> Response:
        """``action``'s answer for the caller's response named in the path (JSON bytes as
        they are, anything else serialized), or its GatewayError in OpenAI's shape."""
        key, limited = request.scope.get(KEY_SCOPE), dict[str, str]()
        try:
            if self.calls is not None:  # one request against the caller's request limits
                limited = await self.calls.count_call(key, request.headers, "/v1/responses")
            answer = await action(request, owner_of(key), request.path_params["id"])
        except GatewayError as err:
            return Response(self.error(err.status, err.message, err.openai_body()),
                            status_code=err.status, headers={**limited, **err.headers},
                            media_type="application/json")
        return Response(answer if isinstance(answer, bytes) else orjson.dumps(answer),
                        headers=limited, media_type="application/json")


def _only_native_targets(graph: RoutingGraph, model: str) -> bool:
    """Whether every target of route ``model`` takes Responses requests as they are."""
    route = graph.routes.get(model)
    targets = [n for n in walk(route.node) if isinstance(n, TargetNode)] if route else []
    return bool(targets) and all(t.provider.spec.type in RESPONSES_TYPES for t in targets)


def _request_of(ctx: RequestContext) -> tuple[wire.Request, str]:
    """The checked request and the id of its translated answer (the door's native body)."""
    native = ctx.native
    assert isinstance(native, ResponsesNative) and native.request is not None
    return native.request, native.id


def _as_sent(answer: dict[str, Any], request: wire.Request, id: str) -> dict[str, Any]:
    """OpenAI's response object as the client asked for it: its store flag and the previous
    response (the gateway sent neither: it keeps the conversation itself), under the
    gateway's own id for this request (the upstream's, asked with store: false, names
    nothing there, and one that repeats would replace another key's stored response or make
    a response its own previous one)."""
    return {**answer, "id": id, "store": request.store,
            "previous_response_id": request.previous_response_id}


class NativeRelay:
    """An OpenAI Responses stream relayed event for event; the events that carry the response
    object say what the client asked (store, previous_response_id), and the last one is
    kept to be stored."""

    def __init__(self, request: wire.Request, id: str):
        self.request = request
        self.id = id
        self.sequence = 0
        self.response: dict[str, Any] | None = None
        self._framer = SSEFramer()

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._event(raw) for raw in self._framer.feed(chunk))

    def finish(self) -> bytes:
        return self._framer.rest()

    def _event(self, raw: bytes) -> bytes:
        self.sequence += 1
        if b'"response.' not in raw:
            return raw
        parsed = parse_event(raw)
        try:
            payload = orjson.loads(parsed.data) if parsed is not None else None
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(payload, dict) or payload.get("type") not in LIFECYCLE \
                or not isinstance(payload.get("response"), dict):
            return raw
        payload["response"] = _as_sent(payload["response"], self.request, self.id)
        if payload["type"] in FINAL:
            self.response = payload["response"]
        return wire.event(payload)


def _page(items: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise GatewayError(400, "order must be asc or desc", param="order")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise GatewayError(400, f"limit must be an integer from 1 to {MAX_PAGE}", param="limit")
    ordered = items if order == "asc" else items[::-1]
    after = query.get("after")
    if after:
        ids = [item.get("id") for item in ordered]
        if after not in ids:
            raise GatewayError(400, f"no input item with id '{after}'", param="after")
        ordered = ordered[ids.index(after) + 1:]
    data = ordered[:limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(ordered) > limit}


def routes(store: ResponseStore, calls: "Limits | None" = None) -> list[Any]:
    door = ResponsesDoor(store, calls)

    async def create(request: Request) -> Response:
        response: Response = await request.scope[DISPATCH_SCOPE](request, door, door.route)
        return response

    return [FrontDoorRoute("/v1/responses", door, create),
            FrontDoorRoute("/v1/responses/{id}", door, door.retrieve, ("GET",)),
            FrontDoorRoute("/v1/responses/{id}", door, door.delete, ("DELETE",)),
            FrontDoorRoute("/v1/responses/{id}/input_items", door, door.input_items, ("GET",))]
