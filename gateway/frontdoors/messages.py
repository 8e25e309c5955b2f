"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API in front of every
provider. An Anthropic target gets the client's body as it is and its answer goes back as it
is; any other target gets the translation (anthropic_messages.py) and its answer is turned
back into Anthropic's shape."""

from __future__ import annotations

from typing import Any, AsyncIterator, Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..errors import GatewayError, UpstreamError
from ..graph.context import RequestContext
from ..graph.nodes import TargetNode
from ..graph.plugin_layer import plugins_may_rewrite_requests
from ..hookspecs import DISPATCH_SCOPE
from ..middleware.limits_rules import estimate_prompt_tokens
from ..providers.anthropic import AnthropicProvider
from ..providers.base import NativeBody, UpstreamResponse
from ..types import walk
from . import anthropic_messages as wire
from .routes import FrontDoorRoute

FORWARDED_HEADERS = ("anthropic-beta",)  # of the client's headers, what Anthropic targets get


class MessagesDoor:
    name = "messages"
    endpoint = "chat"

    def inbound(self, body: dict[str, Any], headers: Mapping[str, str]
                ) -> tuple[dict[str, Any], NativeBody | None]:
        forwarded = {name: headers[name] for name in FORWARDED_HEADERS if headers.get(name)}
        return wire.to_chat(body), NativeBody(wire.API, body, forwarded)

    def answer(self, ctx: RequestContext, response: UpstreamResponse) -> bytes:
        assert response.body is not None
        if response.api == wire.API:
            return response.body
        return orjson.dumps(wire.from_chat(orjson.loads(response.body), ctx.route))

    async def stream(self, ctx: RequestContext, response: UpstreamResponse
                     ) -> AsyncIterator[bytes]:
        assert response.stream is not None
        if response.api == wire.API:
            async for chunk in response.stream:
                yield chunk
            return
        translator = wire.StreamToMessages(ctx.route)
        async for chunk in response.stream:
            out = translator.feed(chunk)
            if out:
                yield out
        yield translator.finish()

    def error(self, status: int, message: str, openai: bytes | None = None) -> bytes:
        return wire.error_body(status, message)

    def stream_error(self, status: int, message: str) -> bytes:
        return wire.error_event(status, message)


class CountTokensDoor(MessagesDoor):
    """A count_tokens body has no max_tokens: one is lent to the translation."""

    def inbound(self, body: dict[str, Any], headers: Mapping[str, str]
                ) -> tuple[dict[str, Any], NativeBody | None]:
        return super().inbound({"max_tokens": 1, **body}, headers)


MESSAGES = MessagesDoor()
COUNT_TOKENS = CountTokensDoor()


async def count_tokens(request: Request) -> Response:
    """Exact (Anthropic's own count) when the route's first target is Anthropic, else an
    estimate (4 characters a token): {"input_tokens": N}. Also an estimate when a plugin has
    request middleware: this call does not run it, so the client's body (say, the personal
    data pii-redact would mask) must not go to Anthropic."""
    try:
        prepared = await request.scope[DISPATCH_SCOPE].prepare(request, COUNT_TOKENS)
        key, routed = prepared.key, prepared.routed
        if key is not None and not key.allows(routed.route):
            raise GatewayError(403, f"key '{key.name}' may not use route '{routed.route}'",
                               type="permission_error")
        target = next((n for n in walk(routed.node) if isinstance(n, TargetNode)), None)
        headers = {"x-gateway-route": routed.route}
        if target is not None and isinstance(target.provider, AnthropicProvider) \
                and not plugins_may_rewrite_requests(prepared.graph.middleware):
            native = NativeBody(wire.API, {**routed.native.body, "model": target.model},
                                routed.native.headers)
            try:
                raw = await target.provider.count_tokens(native, target.timeouts)
            except UpstreamError as err:
                raise target.scrubber.error(err) from None
            return Response(raw, headers={**headers, "x-gateway-target": target.label,
                                          "x-gateway-token-count": "exact"},
                            media_type="application/json")
        estimate = estimate_prompt_tokens(routed.body) + _tool_tokens(routed.body)
        return Response(orjson.dumps({"input_tokens": estimate}),
                        headers={**headers, "x-gateway-token-count": "estimate"},
                        media_type="application/json")
    except (GatewayError, UpstreamError) as err:
        return Response(wire.error_body(err.status, err.message), status_code=err.status,
                        media_type="application/json")


def _tool_tokens(body: dict[str, Any]) -> int:
    return len(orjson.dumps(body.get("tools"))) // 4 if body.get("tools") else 0


def routes() -> list[Any]:
    return [FrontDoorRoute("/v1/messages", MESSAGES),
            FrontDoorRoute("/v1/messages/count_tokens", COUNT_TOKENS, count_tokens)]
