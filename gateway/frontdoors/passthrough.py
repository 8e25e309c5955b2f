"""/v1/passthrough/{provider}/{path}: a provider's own endpoints (Anthropic's batches, OpenAI's
Responses, Cohere's rerank, ...), with the provider's credentials, only to its configured host.

The request still goes through the middleware chain (keys, limits, plugins, the request log):
its route is ``passthrough/<provider>``, which a key must be allowed to use (or all routes),
and its node is a PassthroughNode, built per request, which makes the one call.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Mapping

from starlette.requests import Request
from starlette.responses import Response

from ..errors import GatewayError, UpstreamError
from ..graph.context import Attempt, RequestContext
from ..graph.graph import KeySpec, RoutingGraph
from ..graph.nodes import attempt_span
from ..hookspecs import DISPATCH_SCOPE, Routed
from ..providers.base import Provider, Timeouts, UpstreamResponse
from ..providers.passthrough import PassthroughRefused, forwarded_headers, send, upstream_url
from ..providers.scrub import Scrubber
from ..types import Node
from .openai_shaped import OpenAIShapedDoor
from .routes import FrontDoorRoute

ROUTE_PREFIX = "passthrough/"  # + provider name: the route a key must be allowed to use
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# The provider's own endpoint may take long (a batch upload): bounded by the request's deadline
# (x-gateway-timeout, defaults.request_timeout) when it has one.
TIMEOUTS = Timeouts(connect=10.0, first_byte=300.0, idle=300.0, total=600.0)


class PassthroughNode:
    """The one upstream call of a passthrough request (not part of the compiled graph)."""

    kind: ClassVar[str] = "passthrough"

    def __init__(self, provider: Provider, method: str, url: str, data: bytes,
                 headers: Mapping[str, str], credentials: Mapping[str, str], scrubber: Scrubber):
        self.path = f"$.passthrough.{provider.name}"
        self.provider, self.method, self.url, self.data = provider, method, url, data
        self.headers, self.credentials, self.scrubber = headers, credentials, scrubber

    def children(self) -> tuple[Node, ...]:
        return ()

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        label = f"{self.provider.name}/{ROUTE_PREFIX.rstrip('/')}"
        timeouts = TIMEOUTS
        remaining = ctx.remaining()
        if remaining is not None:
            timeouts = timeouts.clipped(max(remaining, 0.001))
        span = attempt_span(ctx)
        started = time.monotonic()
        try:
            response = await send(self.provider, self.method, self.url, self.data,
                                  self.headers, self.credentials, timeouts)
        except UpstreamError as err:
            err.target = label
            self.scrubber.error(err)
            ms = (time.monotonic() - started) * 1000
            ctx.upstream_ms += ms
            ctx.attempts.append(Attempt(label, err.status, err.error_class, ms, started, span))
            raise
        ms = (time.monotonic() - started) * 1000
        ctx.upstream_ms += ms
        if response.body is not None:  # an error answer: scrubbed of every credential
            response.body = self.scrubber.body(response.body)
        ctx.attempts.append(Attempt(label, response.status, None, ms, started, span))
        response.target = ctx.target = label
        return response


class PassthroughDoor(OpenAIShapedDoor):
    """Answers as the provider gave them; the gateway's own errors in OpenAI's shape.
    Requests are routed by ``route`` below, not by a model."""

    name = endpoint = "passthrough"


DOOR = PassthroughDoor()


def route(request: Request, graph: RoutingGraph, key: KeySpec | None, raw: bytes) -> Routed:
    """The request's node, or GatewayError: 404 for an unknown provider, 400 for a path or
    header that could lead elsewhere or a provider that cannot be passed through."""
    name = request.path_params["provider"]
    provider = graph.providers.get(name)
    if provider is None:
        raise GatewayError(404, f"no provider named '{name}' on this gateway",
                           code="provider_not_found", param="provider")
    if not provider.spec.options.get("passthrough"):
        raise GatewayError(403, f"provider '{name}' is not open to passthrough (its whole API, "
                           "with its credentials): the gateway's operator opens it with "
                           f"providers.{name}.passthrough: true",
                           type="permission_error", code="passthrough_disabled")
    credentials = provider.passthrough_headers()
    if credentials is None:  # refused by the compiler already; kept for configs built in code
        raise GatewayError(400, f"provider '{name}' (type {provider.spec.type}) cannot be "
                           "passed through", code="passthrough_unsupported")
    try:
        url = upstream_url(provider.spec.base_url, _raw_path(request),
                           request.scope.get("query_string", b"").decode("latin-1"))
        headers = forwarded_headers(request.headers)
    except PassthroughRefused as refused:
        raise GatewayError(400, f"passthrough refused: {refused}",
                           code="passthrough_refused") from None
    node = PassthroughNode(provider, request.method, url, raw, headers, credentials,
                           graph.scrubber)
    return Routed(body={}, route=ROUTE_PREFIX + name, node=node)


def _raw_path(request: Request) -> str:
    """The path below /v1/passthrough/{provider}/ as the client wrote it (still encoded)."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    prefix = f"/v1/passthrough/{request.path_params['provider']}/".encode()
    if not raw.startswith(prefix):  # the provider name was percent-encoded: refused
        raise GatewayError(400, "passthrough refused: write the provider name as it is",
                           code="passthrough_refused")
    return raw[len(prefix):].split(b"?", 1)[0].decode("latin-1")


async def serve(request: Request) -> Response:
    response: Response = await request.scope[DISPATCH_SCOPE](request, DOOR, route)
    return response


def routes() -> list[Any]:
    return [FrontDoorRoute("/v1/passthrough/{provider}/{path:path}", DOOR, serve, METHODS)]
