"""The usage a streamed answer reports, read as the stream passes through.

The gateway asks for it on every streamed chat or completions request (`stream_options:
{include_usage: true}`): OpenAI-compatible upstreams then end the stream with a chunk whose
`choices` is empty and whose `usage` is the whole request's, and the native adapters turn their
providers' usage events (Anthropic message_start/message_delta, Gemini usageMetadata, Cohere
message-end, Bedrock metadata) into the same chunk. ``StreamUsage`` keeps that usage and, when
the client did not ask for it, drops the chunk, so the client gets the stream it asked for.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..providers.sse import SSEFramer, parse_event

_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')  # not `"usage": null`, which OpenAI sends too


class StreamUsage:
    """Fed the stream chunk by chunk; gives back what the client gets (whole SSE events)."""

    __slots__ = ("usage", "events", "_framer", "_strip")

    def __init__(self, *, strip: bool) -> None:
        self.usage: dict[str, Any] | None = None  # the last usage object the stream reported
        self.events = 0  # data events besides [DONE] and usage-only ones: an estimate's basis
        self._framer = SSEFramer()
        self._strip = strip  # drop the usage-only chunk (the client did not ask for it)

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(event for event in self._framer.feed(chunk) if self._keep(event))

    def end(self) -> bytes:
        """The bytes of an event the stream never finished, if any (passed on as they are)."""
        rest = self._framer.rest()
        return rest if rest and self._keep(rest) else b""

    def _keep(self, event: bytes) -> bool:
        if _USAGE_OBJECT.search(event):
            payload = _payload(event)
            if payload is not None and payload.get("type") in _ANTHROPIC_USAGE_EVENTS:
                self._anthropic(payload)
                return True
            if payload is not None and payload.get("type") in _RESPONSES_FINAL_EVENTS:
                # A native OpenAI Responses stream (the /v1/responses front door): the usage
                # is the response object's, in its own terms (input_tokens, output_tokens).
                response = payload.get("response")
                usage = response.get("usage") if isinstance(response, dict) else None
                if isinstance(usage, dict):
                    self.usage = usage
                return True
            usage = payload.get("usage") if payload is not None else None
            if payload is not None and isinstance(usage, dict):
                self.usage = usage
                if not payload.get("choices"):  # the usage-only chunk
                    return not self._strip
        if event.startswith(b"data:") and not event.startswith(b"data: [DONE]"):
            self.events += 1
        return True


    def _anthropic(self, payload: dict) -> None:
        """A native Anthropic stream (the /v1/messages front door): input tokens come in
        message_start, the running totals in message_delta; merged in Anthropic's own terms
        (the limits middleware reads both shapes)."""
        message = payload.get("message")
        usage = message.get("usage") if isinstance(message, dict) else payload.get("usage")
        if isinstance(usage, dict):
            self.usage = {**(self.usage or {}),
                          **{k: v for k, v in usage.items() if v is not None}}


_ANTHROPIC_USAGE_EVENTS = frozenset({"message_start", "message_delta"})
_RESPONSES_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete",
                                     "response.failed"})


def _payload(event: bytes) -> dict | None:
    parsed = parse_event(event)
    try:
        value = orjson.loads(parsed.data) if parsed is not None else None
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
