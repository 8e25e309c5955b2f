"""The OpenAI-compatible endpoints under /v1.

Each request reads the current graph once and keeps that snapshot for its whole life, so a
reload never changes the rules under a running request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from typing import AsyncIterator, Callable

import orjson
from starlette.requests import Request
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.responses import Response, StreamingResponse

from ..config.suggest import did_you_mean
from ..units import seconds
from ..errors import GatewayError, UpstreamError, openai_error_body
from ..json_depth import MAX_DEPTH, too_deep
from ..graph.context import RequestContext, header_metadata
from ..graph.graph import RoutingGraph
from ..providers.base import Upload
from ..providers.sse import data_event, ends_event
from .drain import DRAIN
from .errors import gateway_error_response, upstream_failure
from .loops import check_hops
from .reload import GraphHolder
from .request_end import Ending, finish, trace_context
from .request_shape import check_body
from ..request_stats import STATS


class OpenAIEndpoints:
    def __init__(self, holder: GraphHolder):
        self.holder = holder

    async def chat_completions(self, request: Request) -> Response:
        return await self._proxy(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._proxy(request, "completions")

    async def embeddings(self, request: Request) -> Response:
        return await self._proxy(request, "embeddings")

    async def images(self, request: Request) -> Response:
        return await self._proxy(request, "images")

    async def speech(self, request: Request) -> Response:
        return await self._proxy(request, "speech")

    async def transcriptions(self, request: Request) -> Response:
        try:
            return await self._proxy(request, "transcriptions")
        finally:
            form = request.scope.get("gateway.form")
            if form is not None:
                await form.close()  # the spooled upload, once the answer is complete

    async def models(self, request: Request) -> Response:
        """GET /v1/models: the routes the caller's key may use."""
        graph = self.holder.current
        headers = {"x-gateway-config-version": str(graph.version)}
        try:
            allowed = _allowed_routes(graph, request)
        except GatewayError as err:
            return gateway_error_response(err, headers)
        data = [_model_object(graph, r) for r in allowed]
        return Response(orjson.dumps({"object": "list", "data": data}), headers=headers,
                        media_type="application/json")

    async def model(self, request: Request) -> Response:
        """GET /v1/models/{model}: one route, under the same key rules as the list; a route
        the key may not use is as unknown as one that does not exist (404)."""
        graph = self.holder.current
        headers = {"x-gateway-config-version": str(graph.version)}
        name = request.path_params["model"]
        try:
            allowed = _allowed_routes(graph, request)
            if name not in allowed:
                raise _unknown_model(name, allowed)
        except GatewayError as err:
            return gateway_error_response(err, headers)
        return Response(orjson.dumps(_model_object(graph, name)), headers=headers,
                        media_type="application/json")

    async def _proxy(self, request: Request, endpoint: str) -> Response:
        started = time.monotonic()
        graph = self.holder.current
        request_id = _request_id(request)
        headers = {"x-request-id": request_id, "x-gateway-config-version": str(graph.version)}
        ctx: RequestContext | None = None
        key = None
        try:
            # Auth before anything else: an unauthenticated caller learns nothing about routes.
            key = graph.identify(request.headers) if graph.identify is not None else None
            check_hops(request.headers)  # 508 for a request going round between gateways
            if endpoint == "transcriptions":
                body, files = await read_form(request, graph.settings.max_body)
            else:
                body, files = await read_json(request, graph.settings.max_body), ()
            model = _model(body)
            route = graph.routes.get(model)
            if route is None:
                raise _unknown_model(model, _routes_for(graph, key))
            headers["x-gateway-route"] = model
            check_body(body, endpoint)
            ctx = RequestContext(
                endpoint=endpoint,
                body=body,
                route=model,
                request_id=request_id,
                stream=_stream_flag(body, endpoint),
                headers=request.headers,
                metadata=_metadata(request),
                deadline=_deadline(request, graph.request_timeout),
                node=route.node,
                retry_budget=route.retry_budget,
                files=files,
                key=key,
                **trace_context(request.headers, graph.trace_ratio),
            )
            if route.retry_budget is not None:
                route.retry_budget.state.request(ctx.started)
            upstream = await graph.handler(ctx)
        except GatewayError as err:
            overhead = _account(headers, started, ctx)
            finish(graph, ctx, Ending(endpoint, request_id, err.status, started,
                                      headers.get("x-gateway-route", ""),
                                      key.name if key is not None else None, error=err.message,
                                      overhead_ms=overhead))
            return gateway_error_response(err, headers)
        except UpstreamError as err:
            assert ctx is not None  # only the chain raises UpstreamError, and ctx is built first
            graph.scrubber.error(err)  # also what middleware raised; providers' already is
            status, content, extra = upstream_failure(err, ctx)
            headers.update(extra)
            headers["x-gateway-attempts"] = str(len(ctx.attempts))
            headers["x-gateway-target"] = err.target
            overhead = _account(headers, started, ctx)
            finish(graph, ctx, Ending(endpoint, request_id, status, started, target=err.target,
                                      error=err.message, overhead_ms=overhead))
            return Response(content, status_code=status, headers=headers,
                            media_type=extra.get("Content-Type", "application/json"))
        if upstream.headers:  # added by middleware; the gateway's own headers win
            headers = {**upstream.headers, **headers}
        headers["x-gateway-target"] = upstream.target
        headers["x-gateway-attempts"] = str(len(ctx.attempts))
        overhead = _account(headers, started, ctx)
        ending = Ending(endpoint, request_id, upstream.status, started, target=upstream.target,
                        cache=headers.get("x-gateway-cache"), overhead_ms=overhead)
        if upstream.stream is not None:
            headers["Cache-Control"] = "no-cache"
            return StreamingResponse(
                guard_stream(upstream.stream, ctx, ending, graph,
                             sse=upstream.media_type.startswith("text/event-stream")),
                status_code=upstream.status, headers=headers, media_type=upstream.media_type,
            )
        ending.first_byte = time.monotonic()
        ending.response_body = upstream.body
        finish(graph, ctx, ending)
        return Response(upstream.body, status_code=upstream.status, headers=headers,
                        media_type=upstream.media_type)


def _account(headers: dict, started: float, ctx: RequestContext | None) -> float:
    """x-gateway-overhead-ms: time spent in the gateway itself, also counted for /metrics:
    the total (for a stream, up to its first byte) minus the time waiting on upstreams (every
    attempt, failed ones included) and minus retry backoff sleeps."""
    waited = (ctx.upstream_ms + ctx.backoff_ms) / 1000 if ctx is not None else 0.0
    overhead = time.monotonic() - started - waited
    headers["x-gateway-overhead-ms"] = f"{overhead * 1000:.3f}"
    STATS.overhead.observe(overhead)
    return overhead * 1000


async def guard_stream(
    chunks: AsyncIterator[bytes], ctx: RequestContext, ending: Ending, graph: RoutingGraph,
    sse: bool = True, error_event: Callable[[int, str], bytes] | None = None,
) -> AsyncIterator[bytes]:
    """Forward chunks as they come. A failure after the first byte cannot fall back any more:
    end an SSE stream with an error event in OpenAI's shape, never a silent truncation (a
    binary stream, such as audio, just ends; the log says why). If the relayed bytes stopped
    inside an event, that event is ended first, so the error event is one of its own and not
    the tail of a broken line. The request is logged when the stream ends, with how it ended:
    status 200 when complete, else the failure's status, `outcome` and reason; its record
    keeps the time of the first byte and, when a plugin wants bodies, the first
    BODY_CAPTURE bytes of the stream. A front door gives its own
    ``error_event(status, message)`` (Anthropic's ``event: error``)."""
    status, error, outcome = 200, None, None
    tail = b"\n\n"  # the last bytes relayed: whether they end an event
    open_stream = DRAIN.open_stream()  # so a shutdown can end it cleanly
    iterator = chunks.__aiter__()
    captured: list[bytes] | None = [] if graph.record_bodies else None
    room = BODY_CAPTURE
    try:
        while not open_stream.stopping:
            open_stream.waiting = True
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            finally:
                open_stream.waiting = False
            if ending.first_byte is None:
                ending.first_byte = time.monotonic()
            if captured is not None and room > 0:
                captured.append(chunk[:room])
                room -= len(chunk)
            yield chunk
            tail = chunk[-4:] if len(chunk) >= 4 else (tail + chunk)[-4:]
        if open_stream.stopping:
            raise _shutting_down()
    except (UpstreamError, GatewayError, asyncio.CancelledError) as caught:
        err: UpstreamError | GatewayError
        if isinstance(caught, asyncio.CancelledError):
            if not open_stream.stopping:
                status, error, outcome = 499, _CLIENT_LEFT, "client_disconnected"
                raise
            _uncancel()  # cancelled by the drain: end the stream cleanly
            err = _shutting_down()
        else:
            err = caught
        error, outcome = f"stream interrupted: {err.message}", "interrupted"
        code: str | None
        if isinstance(err, UpstreamError):
            status, kind, code = 502, "upstream_error", err.error_class
        else:
            status, kind, code = err.status, err.type, err.code
            outcome = "shutdown" if err.code == "shutting_down" else outcome
        if sse:
            end = b"" if ends_event(tail) else b"\n\n"
            yield end + (error_event(status, error) if error_event is not None
                         else data_event(openai_error_body(error, kind, code)))
    except BaseException:  # the client went away (the server closed the stream)
        status, error, outcome = 499, _CLIENT_LEFT, "client_disconnected"
        raise
    finally:
        DRAIN.close_stream(open_stream)
        if open_stream.stopping:
            await _close(iterator)  # the upstream connection goes now, not at garbage collection
        ending.status, ending.error, ending.outcome = status, error, outcome
        if captured is not None:
            ending.response_body = b"".join(captured)
        finish(graph, ctx, ending)


_CLIENT_LEFT = "the client closed the connection mid-stream"
BODY_CAPTURE = 64 * 1024  # bytes of a streamed answer a RequestRecord keeps, at most


def _uncancel() -> None:
    task = asyncio.current_task()
    assert task is not None  # called from within a stream's task
    task.uncancel()


def _shutting_down() -> GatewayError:
    return GatewayError(503, "gateway shutting down: the stream was still open after "
                        f"server.drain_timeout ({DRAIN.timeout:g}s)", type="service_unavailable",
                        code="shutting_down")


async def _close(iterator) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


async def read_json(request: Request, limit: int) -> dict:
    return parse_json(await read_bytes(request, limit))


async def read_bytes(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (413 past it)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> dict:
    """A JSON object (400 for anything else)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"the request body is not valid JSON: {exc}", code="invalid_json")
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
    if too_deep(raw, body):
        raise GatewayError(400, f"the request body nests deeper than {MAX_DEPTH} levels",
                           code="invalid_json")
    return body


async def read_form(request: Request, limit: int) -> tuple[dict, tuple[Upload, ...]]:
    """A multipart upload: its fields, and its files spooled by Starlette (to disk past 1 MB)
    so they stream out again to the upstream without being held in memory."""
    declared = request.headers.get("content-length")
    if not declared or not declared.isdigit():
        raise GatewayError(411, "send the upload with a Content-Length", code="length_required")
    if int(declared) > limit:
        raise _too_large(limit)
    try:
        form = await request.form(max_files=8, max_fields=64)
    except Exception as exc:  # python-multipart's errors have no common base we can name
        raise GatewayError(400, f"the multipart body cannot be read: {exc}", code="invalid_form")
    request.scope["gateway.form"] = form
    fields, files = {}, []
    for name, value in form.multi_items():
        if isinstance(value, StarletteUpload):
            files.append(Upload(name, value.filename or "upload", value.content_type
                                or "application/octet-stream", value.file))
        else:
            fields[name] = value
    if not any(upload.field == "file" for upload in files):
        raise GatewayError(400, "missing required parameter: 'file' (the audio to transcribe)",
                           code="missing_required_parameter", param="file")
    return fields, tuple(files)


def _allowed_routes(graph, request: Request) -> list[str]:
    """The routes the caller may use (GatewayError 401 for a missing or bad key)."""
    return _routes_for(graph, graph.identify(request.headers) if graph.identify else None)


def _routes_for(graph, key) -> list[str]:
    """The routes ``key`` may use (all of them when no key is needed)."""
    return [r for r in graph.routes if key is None or key.allows(r)]


def _model_object(graph, route: str) -> dict:
    return {"id": route, "object": "model", "created": int(graph.loaded_at), "owned_by": "gateway"}


def _unknown_model(model: str, routes) -> GatewayError:
    hint = did_you_mean(model, routes)
    return GatewayError(
        404,
        f"The model '{model}' does not exist on this gateway"
        + (f"; {hint}" if hint else "") + " (GET /v1/models lists them)",
        code="model_not_found",
        param="model",
    )


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"the request body is larger than the limit of {limit} bytes "
                        "(server.max_body)", code="request_too_large")


def _model(body: dict) -> str:
    """The route name; the rest of the body is checked once the route is known
    (request_shape.check_body)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "you must provide a model parameter (a route name)",
                           code="missing_required_parameter", param="model")
    return model


def _stream_flag(body: dict, endpoint: str) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise GatewayError(400, "'stream' must be true or false", code="invalid_type", param="stream")
    if stream and endpoint == "embeddings":
        raise GatewayError(400, "embeddings cannot be streamed", code="invalid_value", param="stream")
    return stream


def _metadata(request: Request) -> dict:
    return header_metadata(request.headers)


def _deadline(request: Request, cap: float | None) -> float | None:
    """The request's deadline: `x-gateway-timeout` (30s, 1500ms, or seconds), never longer
    than defaults.request_timeout."""
    raw = request.headers.get("x-gateway-timeout")
    budget = cap
    if raw:
        try:
            asked = seconds(float(raw) if raw.replace(".", "", 1).isdigit() else raw)
        except ValueError:
            raise GatewayError(400, "x-gateway-timeout must be a duration such as 30s or 1500ms",
                               code="invalid_timeout") from None
        budget = asked if cap is None else min(asked, cap)
    return None if budget is None else time.monotonic() + budget


_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)


def _request_id(request: Request) -> str:
    """The client's x-request-id when it sends a sane one, else a new id: a random prefix per
    process and a counter (unique, and far cheaper than uuid4 on every request)."""
    given = request.headers.get("x-request-id")
    if given and len(given) <= 128 and given.isprintable():
        return given
    return f"{_ID_PREFIX}{next(_ids):010x}"
