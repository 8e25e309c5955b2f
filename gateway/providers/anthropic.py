"""Anthropic's Messages API (POST {base_url}/v1/messages) behind the OpenAI chat API.

Requests are translated by anthropic_translate.py and answers by anthropic_response.py; this
module does the HTTP. A stream is returned once Anthropic's ``message_start`` event has
arrived, so an ``error`` event in its place (an overloaded model, typically) is still an
ordinary failed attempt that retry and fallback act on. An ``error`` event later ends the
stream with UpstreamError, which the server turns into an SSE error event.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Mapping

import orjson

from ..errors import UpstreamError
from .anthropic_response import StreamTranslator, from_anthropic, parse_error, stream_error
from .anthropic_translate import DEFAULT_MAX_TOKENS, to_anthropic
from .base import (
    ClientPool, NativeBody, Provider, ProviderSpec, Timeouts, UpstreamRequest, UpstreamResponse,
)
from .http import post_json, post_stream
from .native import TranslationError, bad_request, bad_upstream, load_json, unsupported_endpoint
from .sse import DONE, Event, SSEFramer, chunk, events, parse_event

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
NATIVE_API = "anthropic.messages"  # NativeBody.api of a Messages request (POST /v1/messages)
# What POST /v1/messages/count_tokens accepts of a Messages body.
COUNT_TOKENS_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers")


class AnthropicProvider(Provider):
    capabilities = frozenset({"chat", "stream", "tools", "vision", "json", "reasoning"})
    base_url = DEFAULT_BASE_URL
    hosted = True
    prefill = True  # a final assistant turn is continued (its trailing whitespace stripped)

    @classmethod
    def validate_options(cls, type_name: str, options: Mapping[str, Any]) -> list[str]:
        errors = []
        if "api_version" in options and not str(options["api_version"]).strip():
            errors.append("api_version (the anthropic-version header) must not be empty")
        return errors

    def __init__(self, spec: ProviderSpec, clients: ClientPool) -> None:
        super().__init__(spec, clients)
        base = spec.base_url.rstrip("/")
        self._url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        headers = {"Content-Type": "application/json",
                   "anthropic-version": str(spec.options.get("api_version") or DEFAULT_VERSION),
                   **spec.headers}
        if spec.api_key:
            headers["x-api-key"] = spec.api_key
        self._headers = headers
        self._max_tokens = int(spec.options.get("default_max_tokens") or DEFAULT_MAX_TOKENS)
        self._key = self.pool_key()

    def health_url(self) -> str:
        """GET /v1/models: answers for a valid key without spending tokens."""
        return self._url.removesuffix("/messages") + "/models"

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        if request.endpoint != "chat":
            raise unsupported_endpoint(self.name, "anthropic", request.endpoint)
        if request.native is not None and request.native.api == NATIVE_API:
            return await self._send_native(request, request.native)
        try:
            translated = to_anthropic(request.body, stream=request.stream,
                                      default_max_tokens=self._max_tokens)
        except TranslationError as err:
            raise bad_request(f"anthropic: {err.message}", err.param, err.code) from None
        session = self.clients.session(self._key)
        data = orjson.dumps(translated.body)
        if request.stream:
            chunks, _ = await post_stream(session, self._url, data, self._headers,
                                          request.timeouts, parse_error, expect="text/event-stream")
            options = request.body.get("stream_options") or {}
            translator = StreamTranslator(
                include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
                json_tool=translated.json_tool, model=str(request.body.get("model") or ""))
            stream = await open_stream(chunks, translator)
            return UpstreamResponse(200, stream=stream, media_type="text/event-stream")
        raw, _ = await post_json(session, self._url, data, self._headers, request.timeouts,
                                 parse_error)
        message = load_json("anthropic", raw)
        if not isinstance(message, dict):
            raise bad_upstream("anthropic", "the answer is not a JSON object")
        return UpstreamResponse(200, body=orjson.dumps(from_anthropic(message, translated.json_tool)))


    async def _send_native(self, request: UpstreamRequest,
                           native: NativeBody) -> UpstreamResponse:
        """The client's own Messages request, sent as it is (cache_control, thinking blocks
        and their signatures, tool_use / tool_result, system blocks), and Anthropic's answer
        handed back as it is: bytes, or the event stream relayed once message_start arrived."""
        session = self.clients.session(self._key)
        body = native.body
        data = orjson.dumps({**body, "stream": True} if request.stream else body)
        headers = {**self._headers, **_forwarded(native.headers)}
        if request.stream:
            chunks, media_type = await post_stream(session, self._url, data, headers,
                                                   request.timeouts, parse_error,
                                                   expect="text/event-stream")
            stream = await open_native_stream(chunks)
            return UpstreamResponse(200, stream=stream, media_type=media_type, api=NATIVE_API)
        raw, media_type = await post_json(session, self._url, data, headers, request.timeouts,
                                          parse_error)
        return UpstreamResponse(200, body=raw, media_type=media_type, api=NATIVE_API)

    async def count_tokens(self, native: NativeBody, timeouts: Timeouts) -> bytes:
        """POST /v1/messages/count_tokens: Anthropic's exact count, its answer as it is."""
        session = self.clients.session(self._key)
        counted = {k: v for k, v in native.body.items() if k in COUNT_TOKENS_FIELDS}
        raw, _ = await post_json(session, self._url + "/count_tokens", orjson.dumps(counted),
                                 {**self._headers, **_forwarded(native.headers)}, timeouts,
                                 parse_error)
        return raw


def _forwarded(headers: Mapping[str, str]) -> dict[str, str]:
    """The client's anthropic-beta header (prompt-caching, interleaved thinking, ...): the
    only one of its headers that reaches Anthropic."""
    beta = headers.get("anthropic-beta")
    return {"anthropic-beta": beta} if beta else {}


async def open_native_stream(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Hold Anthropic's events until ``message_start`` (an ``error`` event before it raises
    here, while retry and fallback can still act), then relay the bytes as they came."""
    framer = SSEFramer()
    held = b""
    try:
        async for piece in chunks:
            held += piece
            for raw in framer.feed(piece):
                event = parse_event(raw)
                payload = _decode(event.data) if event is not None and event.data else {}
                if payload.get("type") == "error":
                    raise stream_error(payload.get("error") or {})
                if payload.get("type") == "message_start":
                    return _relay_raw(held, chunks)
        raise UpstreamError(502, "server", "anthropic stream ended before message_start")
    except BaseException:
        await _close(chunks)
        raise


async def _relay_raw(head: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield head
        async for piece in chunks:
            yield piece
    finally:
        await _close(chunks)


async def open_stream(chunks: AsyncIterator[bytes],
                      translator: StreamTranslator) -> AsyncIterator[bytes]:
    """Read up to ``message_start`` (an ``error`` event before it raises here, while fallback
    can still act), then return an iterator over the OpenAI chunks of the whole stream."""
    parsed = events(chunks)
    pending: list[dict[str, Any]] = []
    try:
        async for event in parsed:
            pending.extend(translator.feed(_decode(event.data)))
            if translator.started:
                break
        else:
            raise UpstreamError(502, "server", "anthropic stream ended before message_start")
    except BaseException:
        await _close(parsed, chunks)
        raise
    return _relay(parsed, chunks, translator, pending)


async def _relay(parsed: AsyncIterator[Event], chunks: AsyncIterator[bytes],
                 translator: StreamTranslator,
                 pending: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        for payload in pending:
            yield chunk(payload)
        async for event in parsed:
            for payload in translator.feed(_decode(event.data)):
                yield chunk(payload)
            if translator.stopped:
                break
        if not translator.stopped:
            raise UpstreamError(502, "connection", "anthropic stream ended before message_stop",
                                from_upstream=False)
        yield DONE
    finally:
        await _close(parsed, chunks)


def _decode(data: str) -> dict[str, Any]:
    event = load_json("anthropic", data)
    return event if isinstance(event, dict) else {}


async def _close(*iterators: Any) -> None:
    for it in iterators:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # the stream is being abandoned; nothing to report
                pass
