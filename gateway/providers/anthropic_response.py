"""Anthropic Messages API answers -> OpenAI shapes, as pure functions (no I/O): whole
responses, the streaming event sequence, usage, stop reasons and errors."""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..errors import UpstreamError, classify_status
from ..errors import openai_error_body
from .http import error_type

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic's error types and the statuses it sends them with (used for stream error events).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_CONTEXT_PHRASES = ("prompt is too long", "exceed context limit", "context window",
                    "too many total text bytes")
_POLICY_PHRASES = ("content filtering policy", "usage policy")


def finish_reason(stop_reason: str | None, json_tool_used: bool = False) -> str:
    if json_tool_used and stop_reason == "tool_use":
        return "stop"  # the forced json_schema tool: its input is the answer
    return FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def usage(raw: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI usage. Anthropic's input_tokens excludes cached tokens, OpenAI's prompt_tokens
    includes them: prompt_tokens = input + cache reads + cache writes."""
    raw = raw or {}
    read = raw.get("cache_read_input_tokens") or 0
    write = raw.get("cache_creation_input_tokens") or 0
    prompt = (raw.get("input_tokens") or 0) + read + write
    completion = raw.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }


def from_anthropic(data: dict[str, Any], json_tool: str | None = None,
                   created: int | None = None) -> dict[str, Any]:
    """An Anthropic message as an OpenAI chat.completion."""
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    json_used = False
    for block in data.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
            thinking_blocks.append({"type": "thinking", "thinking": block.get("thinking") or "",
                                    "signature": block.get("signature")})
        elif kind == "redacted_thinking":
            thinking_blocks.append({"type": "redacted_thinking", "data": block.get("data")})
        elif kind == "tool_use" and json_tool and block.get("name") == json_tool:
            texts.append(orjson.dumps(block.get("input") or {}).decode())
            json_used = True
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"),
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    message: dict[str, Any] = {"role": "assistant",
                               "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thinking_blocks:
        message["reasoning_content"] = "".join(reasoning)
        message["thinking_blocks"] = thinking_blocks
    return {
        "id": data.get("id") or "msg",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": data.get("model") or "",
        "choices": [{"index": 0, "message": message,
                     "finish_reason": finish_reason(data.get("stop_reason"), json_used),
                     "logprobs": None}],
        "usage": usage(data.get("usage")),
    }


class StreamTranslator:
    """Anthropic stream events in, OpenAI chat.completion.chunk payloads out.

    ``feed`` takes one decoded event and returns the chunks it turns into (often none);
    an ``error`` event raises UpstreamError. ``started`` is set by message_start and
    ``stopped`` by message_stop, after which the caller writes ``data: [DONE]``.
    """

    def __init__(self, *, include_usage: bool = False, json_tool: str | None = None,
                 model: str = "", created: int | None = None):
        self.include_usage = include_usage
        self.json_tool = json_tool
        self.model = model
        self.created = int(time.time()) if created is None else created
        self.id = "msg"
        self.usage: dict[str, Any] = {}
        self.started = False
        self.stopped = False
        self._calls: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
        self._json_blocks: set[int] = set()
        self._json_used = False

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id") or self.id
            self.model = message.get("model") or self.model
            self.usage = dict(message.get("usage") or {})
            self.started = True
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(event.get("index", 0), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._delta(event.get("index", 0), event.get("delta") or {})
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            stop = (event.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, finish_reason(stop, self._json_used))]
        if kind == "message_stop":
            self.stopped = True
            if self.include_usage:
                return [{"id": self.id, "object": "chat.completion.chunk",
                         "created": self.created, "model": self.model, "choices": [],
                         "usage": usage(self.usage)}]
            return []
        if kind == "error":
            raise stream_error(event.get("error") or {})
        return []  # ping, content_block_stop, and event types added later

    def _block_start(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "tool_use" and self.json_tool and block.get("name") == self.json_tool:
            self._json_blocks.add(index)
            self._json_used = True
            return []
        if kind == "tool_use":
            n = self._calls[index] = len(self._calls)
            return [self._chunk({"tool_calls": [{
                "index": n, "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"), "arguments": ""}}]})]
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk({"reasoning_content": block["thinking"]})]
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        if kind == "input_json_delta" and delta.get("partial_json"):
            if index in self._json_blocks:
                return [self._chunk({"content": delta["partial_json"]})]
            if index in self._calls:
                return [self._chunk({"tool_calls": [{
                    "index": self._calls[index],
                    "function": {"arguments": delta["partial_json"]}}]})]
        return []  # signature_delta, citations_delta, empty fragments

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


# -- errors --------------------------------------------------------------------------------


def error_code(kind: str | None, message: str) -> str | None:
    """The OpenAI-style code for an Anthropic error: context and policy errors get the codes
    the gateway classifies as context_window and content_policy; others keep their type."""
    lowered = message.lower()
    if any(p in lowered for p in _CONTEXT_PHRASES):
        return "context_length_exceeded"
    if any(p in lowered for p in _POLICY_PHRASES):
        return "content_filter"
    return kind


def parse_error(body: bytes, status: int) -> tuple[str, str | None]:
    """Anthropic's {"type": "error", "error": {"type", "message"}} -> (message, code)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or f"anthropic answered {status}"), None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        message = str(err.get("message") or f"anthropic answered {status}")
        return message, error_code(err.get("type"), message)
    return f"anthropic answered {status}", None


def stream_error(err: dict[str, Any]) -> UpstreamError:
    """An ``error`` event inside a stream, as the UpstreamError its status would have been."""
    kind = err.get("type")
    message = str(err.get("message") or kind or "anthropic stream error")
    status = ERROR_STATUS.get(kind or "", 500)
    code = error_code(kind, message)
    return UpstreamError(status, classify_status(status, code), message,
                         body=openai_error_body(message, error_type(status), code),
                         headers={"Content-Type": "application/json"})
