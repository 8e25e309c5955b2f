"""Anthropic's Messages API (POST /v1/messages) as a front door: pure translations, no I/O.

- ``to_chat``: a Messages request -> the gateway's internal shape (an OpenAI chat body), for
  targets that do not speak Anthropic. A target that does gets the client's body as it is
  (providers/base.NativeBody), so these translations only ever serve the other providers.
- ``from_chat``: an OpenAI chat.completion -> an Anthropic message.
- ``StreamToMessages``: OpenAI chat.completion.chunk events -> Anthropic's event sequence
  (message_start, ping, content_block_start/delta/stop, message_delta, message_stop).
- ``error_body`` / ``error_event``: errors in Anthropic's shape.

What does not cross (docs/frontdoors.md): thinking blocks and ``thinking`` (no other provider
takes Anthropic's signed thinking), server tools (web search, code execution: Anthropic's own),
``top_k``, ``cache_control`` (Anthropic's prompt cache).
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from ..errors import GatewayError
from .chat_stream import ChatStreamTranslator

API = "anthropic.messages"
# Anthropic's error type for each status the gateway answers with.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 408: "timeout_error",
               413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               502: "api_error", 503: "overloaded_error", 504: "timeout_error",
               529: "overloaded_error"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}
IMAGE_SOURCES = ("base64", "url")


def _invalid(message: str) -> GatewayError:
    return GatewayError(400, message, code="invalid_request_error")


# -- request: Messages -> chat -------------------------------------------------------------


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The internal (OpenAI chat) body of a Messages request. Never mutates ``body``."""
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise _invalid(f"{name}: Field required")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("max_tokens: Input should be an integer greater than or equal to 1")
    messages = _system(body.get("system"))
    raw = body["messages"]
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages: Input should be a non-empty list")
    for i, message in enumerate(raw):
        messages.extend(_message(message, i))
    out: dict[str, Any] = {"model": body["model"], "messages": messages, "max_tokens": max_tokens}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _invalid("stop_sequences: Input should be a list of strings")
        out["stop"] = stops
    user = (body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"),
                                                                      dict) else None
    if user:
        out["user"] = str(user)
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            out["tool_choice"] = choice
        if (body.get("tool_choice") or {}).get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    stream = body.get("stream", False)
    if stream not in (True, False, None):
        raise _invalid("stream: Input should be a valid boolean")
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # message_start/delta report usage
    return out


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if not isinstance(system, list):
        raise _invalid("system: Input should be a valid string or list of text blocks")
    texts = []
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" \
                or not isinstance(block.get("text"), str):
            raise _invalid(f"system.{j}: Input should be a text block")
        texts.append(block["text"])
    return [{"role": "system", "content": "\n\n".join(texts)}] if texts else []


def _message(message: Any, i: int) -> list[dict[str, Any]]:
    """One Messages turn as chat messages: a user turn's tool results become `tool`
    messages (first, as chat wants them right after the assistant's calls)."""
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
    role, content = message["role"], message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _invalid(f"messages.{i}.content: Input should be a valid string or list")
    if role == "assistant":
        return [_assistant(content, i)]
    results, parts = [], []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        where = f"messages.{i}.content.{j}"
        if kind == "tool_result":
            results.append(_tool_result(block, where))
        else:
            part = _part(block, kind, where)
            if part is not None:
                parts.append(part)
    if parts:
        results.append({"role": "user", "content": parts})
    return results


def _part(block: Any, kind: str | None, where: str) -> dict[str, Any] | None:
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise _invalid(f"{where}.text: Field required")
        return {"type": "text", "text": block["text"]}
    if kind in ("image", "document"):
        source = block.get("source") if isinstance(block.get("source"), dict) else {}
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        elif source.get("type") == "url" and isinstance(source.get("url"), str):
            url = source["url"]
        else:
            raise _invalid(f"{where}.source.type: only base64 or url sources cross to "
                           "providers other than Anthropic")
        if kind == "document":
            return {"type": "file", "file": {"file_data": url, "filename":
                                             block.get("title") or "document.pdf"}}
        return {"type": "image_url", "image_url": {"url": url}}
    if kind in ("thinking", "redacted_thinking"):
        return None  # signed by Anthropic: no other provider reads them
    raise _invalid(f"{where}.type: '{kind}' blocks are not permitted in user messages")


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(block.get("tool_use_id"), str):
        raise _invalid(f"{where}.tool_use_id: Field required")
    content = block.get("content")
    if isinstance(content, list):
        text = "\n".join(b.get("text", "") for b in content
                         if isinstance(b, dict) and b.get("type") == "text")
    elif isinstance(content, str):
        text = content
    else:
        text = ""
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}


def _assistant(content: list[Any], i: int) -> dict[str, Any]:
    texts, calls = [], []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _invalid(f"messages.{i}.content.{j}: tool_use needs id and name")
            calls.append({"id": block["id"], "type": "function", "function": {
                "name": block["name"],
                "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _invalid(f"messages.{i}.content.{j}.type: '{kind}' blocks are not "
                           "permitted in assistant messages")
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        out["tool_calls"] = calls
    elif out["content"] is None:
        out["content"] = ""
    return out


def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _invalid("tools: Input should be a valid list")
    tools = []
    for j, tool in enumerate(raw):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _invalid(f"tools.{j}.name: Field required")
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (web search, bash, ...): only Anthropic runs those
        function: dict[str, Any] = {"name": tool["name"],
                                    "parameters": tool.get("input_schema") or {"type": "object"}}
        if tool.get("description"):
            function["description"] = tool["description"]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(choice: Any) -> Any:
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")


# -- answers: chat -> Messages -------------------------------------------------------------


def message_id() -> str:
    return "msg_" + os.urandom(12).hex()


def _tool_id() -> str:
    return "toolu_" + os.urandom(8).hex()


def usage_of(usage: Any) -> dict[str, int]:
    """Anthropic's usage from OpenAI's: input_tokens excludes cached tokens, as Anthropic's does."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = int((details or {}).get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return {"input_tokens": max(0, int(usage.get("prompt_tokens") or 0) - cached),
            "output_tokens": int(usage.get("completion_tokens") or 0),
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


def from_chat(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat.completion as an Anthropic message; ``model`` is the client's (route) name."""
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": str(message["content"])})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or _tool_id(),
                        "name": function.get("name") or "",
                        "input": _arguments(function.get("arguments"))})
    return {"id": message_id(), "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop",
                                                               "end_turn"),
            "stop_sequence": None, "usage": usage_of(answer.get("usage"))}


def _arguments(raw: Any) -> dict[str, Any]:
    """A tool call's arguments (a JSON string) as tool_use input; not an object: {"value": ...}."""
    if isinstance(raw, dict):
        return raw
    try:
        value = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": raw}
    return value if isinstance(value, dict) else {"value": value}


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class StreamToMessages(ChatStreamTranslator):
    """OpenAI chat.completion.chunk bytes in (fed as they come), Anthropic event bytes out.
    ``finish()`` writes the closing events once the chunks are over."""

    def __init__(self, model: str):
        super().__init__()
        self.model = model
        self._index = -1  # of the content block open now, if ``_open``
        self._stop: str | None = None
        self._usage: dict[str, int] = usage_of(None)

    def finish(self) -> bytes:
        out = self._start()
        out.extend(self._close())
        out.append(event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop or "end_turn", "stop_sequence": None},
            "usage": self._usage}))
        out.append(event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {"id": message_id(), "type": "message", "role": "assistant",
                   "model": self.model, "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": usage_of(None)}
        return [event("message_start", {"type": "message_start", "message": message}),
                event("ping", {"type": "ping"})]

    def _usage_of(self, usage: dict[str, Any]) -> None:
        self._usage = usage_of(usage)

    def _finish_of(self, reason: str) -> None:
        self._stop = STOP_REASONS.get(reason, "end_turn")

    def _text(self, text: str) -> list[bytes]:
        out = []
        if self._open != "text":
            out.extend(self._open_block("text", {"type": "text", "text": ""}))
        out.append(self._delta({"type": "text_delta", "text": text}))
        return out

    def _tool_delta(self, call: dict[str, Any]) -> list[bytes]:
        out = []
        slot = f"tool:{call.get('index', 0)}"
        function = call.get("function") or {}
        if self._open != slot:
            block: dict[str, Any] = {"type": "tool_use", "id": call.get("id") or _tool_id(),
                                     "name": function.get("name") or "", "input": {}}
            out.extend(self._open_block(slot, block))
        if function.get("arguments"):
            out.append(self._delta({"type": "input_json_delta",
                                    "partial_json": function["arguments"]}))
        return out

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self._index += 1
        self._open = kind
        out.append(event("content_block_start", {"type": "content_block_start",
                                                 "index": self._index, "content_block": block}))
        return out

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                             "delta": delta})

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [event("content_block_stop", {"type": "content_block_stop", "index": self._index})]


# -- errors --------------------------------------------------------------------------------


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str) -> bytes:
    """Anthropic's error shape: {"type": "error", "error": {"type", "message"}}."""
    return orjson.dumps({"type": "error", "error": {"type": error_type(status), "message": message}})


def error_event(status: int, message: str) -> bytes:
    """The ``error`` event that ends a stream which failed after its first byte."""
    return b"event: error\ndata: " + error_body(status, message) + b"\n\n"
