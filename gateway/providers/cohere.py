"""Cohere v2: chat (POST /v2/chat, streaming included) and embed (POST /v2/embed).

Cohere's v2 chat is close to OpenAI's: messages with system/user/assistant/tool roles, function
tools with JSON Schema parameters, tool calls with JSON-string arguments. The differences the
adapter bridges: ``p`` for top_p, ``stop_sequences``, tool_choice only REQUIRED/NONE (a named
function is REQUIRED over that one tool), the assistant's ``tool_plan`` (surfaced as
``reasoning_content``, and sent back from it), content blocks in answers, finish reasons,
usage under ``tokens``/``billed_units`` and the v2 stream events.
"""

from __future__ import annotations

import re
from typing import Any, AsyncIterator

import orjson

from .base import ClientPool, Provider, ProviderSpec, UpstreamRequest, UpstreamResponse
from .http import post_json, post_stream
from .native import (
    Chunks, aclose, assistant_message, bad_request, bad_upstream, completion, embedding_inputs,
    embeddings, image_url, include_usage, load_json, messages_of, parts_of, primed,
    response_format_of, sampling_of, single_choice, stream_error, text_of, tool_call,
    tool_calls_of, tool_choice_of, tools_of, unsupported_endpoint, usage,
)
from .sse import events

KIND = "cohere"

FINISH = {
    "COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "ERROR_LIMIT": "length",
    "TOOL_CALL": "tool_calls", "ERROR_TOXIC": "content_filter",
}
# Finish reasons that mean the generation failed: an error, not an answer.
FAILED = frozenset({"ERROR", "TIMEOUT", "USER_CANCEL"})
THINKING_BUDGET = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
_CONTEXT = re.compile(r"too many tokens|context length|prompt is too long|exceeds? the (model'?s? )?"
                      r"(maximum|context)", re.IGNORECASE)


class CohereProvider(Provider):
    capabilities = frozenset({"chat", "stream", "tools", "vision", "json", "reasoning", "embeddings",
                              "rerank"})
    base_url = "https://api.cohere.com"
    hosted = True

    def __init__(self, spec: ProviderSpec, clients: ClientPool) -> None:
        super().__init__(spec, clients)
        base = spec.base_url.rstrip("/")
        base = base if base.endswith("/v2") else base + "/v2"
        self._chat_url, self._embed_url = base + "/chat", base + "/embed"
        self._rerank_url = base + "/rerank"
        headers = {"Content-Type": "application/json", "Accept": "application/json", **spec.headers}
        if spec.api_key:
            headers["Authorization"] = f"Bearer {spec.api_key}"
        self._headers = headers
        self._key = self.pool_key()

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        body = request.body
        model = str(body.get("model", ""))
        session = self.clients.session(self._key)
        if request.endpoint == "embeddings":
            raw, _ = await post_json(session, self._embed_url, orjson.dumps(to_embed_request(body)),
                                     self._headers, request.timeouts, parse_error)
            result = from_embed_response(load_json(KIND, raw), model, body.get("encoding_format"))
            return UpstreamResponse(200, body=orjson.dumps(result))
        if request.endpoint == "rerank":
            raw, _ = await post_json(session, self._rerank_url, orjson.dumps(to_rerank(body)),
                                     self._headers, request.timeouts, parse_error)
            return UpstreamResponse(200, body=raw)
        if request.endpoint != "chat":
            raise unsupported_endpoint(self.name, KIND, request.endpoint)
        payload = to_cohere(body, stream=request.stream)
        if request.stream:
            headers = {**self._headers, "Accept": "text/event-stream"}
            chunks, _ = await post_stream(session, self._chat_url, orjson.dumps(payload), headers,
                                          request.timeouts, parse_error, expect="text/event-stream")
            stream = await primed(stream_chunks(chunks, model, include_usage(body)))
            return UpstreamResponse(200, stream=stream, media_type="text/event-stream")
        raw, _ = await post_json(session, self._chat_url, orjson.dumps(payload), self._headers,
                                 request.timeouts, parse_error)
        return UpstreamResponse(200, body=orjson.dumps(from_cohere(load_json(KIND, raw), model)))


# What Cohere's v2 rerank takes: documents as strings (the gateway also accepts {"text": ...}).
RERANK_FIELDS = ("model", "query", "documents", "top_n", "max_tokens_per_doc")


def to_rerank(body: dict[str, Any]) -> dict[str, Any]:
    out = {k: body[k] for k in RERANK_FIELDS if body.get(k) is not None}
    out["documents"] = [d.get("text", "") if isinstance(d, dict) else d
                        for d in body.get("documents") or ()]
    return out


# -- OpenAI -> Cohere --------------------------------------------------------------------------


def to_cohere(body: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    """An OpenAI chat request as a Cohere v2 chat request."""
    single_choice(body, KIND)
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(messages_of(body)):
        role, param = m["role"], f"messages[{i}]"
        if role in ("system", "developer"):
            messages.append({"role": "system", "content": text_of(m.get("content"), param + ".content")})
        elif role == "user":
            content = m.get("content")
            parts = parts_of(content, param + ".content")
            messages.append({"role": "user", "content": content if isinstance(content, str) else [
                {"type": "text", "text": p["text"]} if p["type"] == "text" else
                {"type": "image_url", "image_url": {"url": image_url(p)}} for p in parts]})
        elif role == "assistant":
            text = text_of(m.get("content"), param + ".content")
            calls = tool_calls_of(m, param)
            turn: dict[str, Any] = {"role": "assistant"}
            if calls:
                plan = m.get("reasoning_content") or text
                if plan:
                    turn["tool_plan"] = plan
                turn["tool_calls"] = [
                    {"id": c["id"], "type": "function",
                     "function": {"name": c["function"]["name"],
                                  "arguments": _arguments(c, f"{param}.tool_calls[{j}]")}}
                    for j, c in enumerate(calls)]
            elif text:
                turn["content"] = text
            else:
                continue  # an empty turn: Cohere refuses a message with nothing in it
            messages.append(turn)
        elif role == "tool":
            if not m.get("tool_call_id"):
                raise bad_request(f"{param} needs a tool_call_id", param + ".tool_call_id")
            messages.append({"role": "tool", "tool_call_id": m["tool_call_id"],
                             "content": text_of(m.get("content"), param + ".content")})
        else:
            raise bad_request(f"{param}: role {role!r} is not supported", param + ".role")
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages, "stream": stream}
    tools = tools_of(body)
    if tools:
        mode, name = tool_choice_of(body)
        if name:
            tools = [t for t in tools if t["name"] == name]
            if not tools:
                raise bad_request(f"tool_choice names {name!r}, which is not in tools", "tool_choice")
        out["tools"] = [{"type": "function", "function": _function(t)} for t in tools]
        if mode in ("required", "function"):
            out["tool_choice"] = "REQUIRED"
        elif mode == "none":
            out["tool_choice"] = "NONE"
    if body.get("top_p") is not None:  # Cohere takes p in [0.01, 0.99]; OpenAI's default is 1
        out["p"] = min(0.99, max(0.01, float(body["top_p"])))
    out.update(sampling_of(body, {
        "temperature": "temperature", "seed": "seed", "frequency_penalty": "frequency_penalty",
        "presence_penalty": "presence_penalty", "max_tokens": "max_tokens",
        "stop": "stop_sequences"}))
    kind, schema, _ = response_format_of(body)
    if kind != "text":
        out["response_format"] = {"type": "json_object", **({"json_schema": schema} if schema else {})}
    effort = body.get("reasoning_effort")
    if effort == "none":
        out["thinking"] = {"type": "disabled"}
    elif effort is not None:
        if effort not in THINKING_BUDGET:
            raise bad_request(f"reasoning_effort {effort!r} is not supported", "reasoning_effort")
        out["thinking"] = {"type": "enabled", "token_budget": THINKING_BUDGET[effort]}
    return out


def _arguments(call: dict[str, Any], param: str) -> str:
    raw = call["function"].get("arguments") or "{}"
    if isinstance(raw, dict):
        return orjson.dumps(raw).decode()
    try:
        orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        raise bad_request(f"{param}: function.arguments is not valid JSON", param) from None
    return raw


def _function(fn: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return out


def to_embed_request(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": body.get("model"),
        "texts": embedding_inputs(body),
        "input_type": body.get("input_type") or "search_document",
        "embedding_types": ["float"],
    }
    if body.get("dimensions"):
        out["output_dimension"] = body["dimensions"]
    if body.get("truncate"):
        out["truncate"] = body["truncate"]
    return out


# -- Cohere -> OpenAI --------------------------------------------------------------------------


def finish_reason(reason: str | None) -> str:
    if reason in FAILED:
        raise stream_error(KIND, 502, f"the generation ended with {reason}", "generation_failed")
    return FINISH.get(reason or "COMPLETE", "stop")


def usage_of(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if not data:
        return None
    tokens = data.get("tokens") or data.get("billed_units") or {}
    prompt, output = int(tokens.get("input_tokens") or 0), int(tokens.get("output_tokens") or 0)
    cached = data.get("cached_tokens")
    return usage(prompt, output, cached=int(cached) if cached is not None else None)


def from_cohere(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A v2 chat answer as an OpenAI chat.completion."""
    message = data.get("message")
    if not isinstance(message, dict):
        raise bad_upstream(KIND, "the answer has no message")
    texts, thoughts = [], []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "thinking":
            thoughts.append(block.get("thinking", ""))
    if message.get("tool_plan"):
        thoughts.append(message["tool_plan"])
    calls = [tool_call(c.get("id", ""), (c.get("function") or {}).get("name", ""),
                       (c.get("function") or {}).get("arguments") or "{}")
             for c in message.get("tool_calls") or []]
    reply = assistant_message("".join(texts), calls, "".join(thoughts) or None)
    finish = finish_reason(data.get("finish_reason"))
    if calls and finish == "stop":
        finish = "tool_calls"
    ident = f"chatcmpl-{data['id']}" if data.get("id") else None
    return completion(model, [(reply, finish)], usage_of(data.get("usage")), ident)


def from_embed_response(data: dict[str, Any], model: str,
                        encoding_format: str | None) -> dict[str, Any]:
    vectors = (data.get("embeddings") or {}).get("float") if isinstance(data, dict) else None
    if not isinstance(vectors, list):
        raise bad_upstream(KIND, "the embed answer has no embeddings.float")
    tokens = ((data.get("meta") or {}).get("billed_units") or {}).get("input_tokens") or 0
    return embeddings(model, vectors, int(tokens), encoding_format)


async def stream_chunks(raw: AsyncIterator[bytes], model: str, with_usage: bool) -> AsyncIterator[bytes]:
    """v2 chat stream events -> OpenAI chunks, each yielded as soon as its event arrives."""
    out: Chunks | None = None
    slots: dict[int, int] = {}  # Cohere's tool call index -> OpenAI's
    ended = False
    try:
        async for event in events(raw):
            if not event.data.strip():
                continue
            data = load_json(KIND, event.data)
            kind = data.get("type") or event.event
            delta = data.get("delta") or {}
            message = delta.get("message") or {}
            if out is None:
                out = Chunks(model, f"chatcmpl-{data['id']}" if data.get("id") else None)
                yield out.role()
            if kind in ("content-start", "content-delta"):
                content = message.get("content") or {}
                if content.get("thinking"):
                    yield out.reasoning(content["thinking"])
                if content.get("text"):
                    yield out.content(content["text"])
            elif kind == "tool-plan-delta" and message.get("tool_plan"):
                yield out.reasoning(message["tool_plan"])
            elif kind == "tool-call-start":
                call = message.get("tool_calls") or {}
                fn = call.get("function") or {}
                slot = slots.setdefault(data.get("index", len(slots)), len(slots))
                yield out.tool_start(slot, call.get("id", ""), fn.get("name", ""), fn.get("arguments") or "")
            elif kind == "tool-call-delta":
                args = ((message.get("tool_calls") or {}).get("function") or {}).get("arguments")
                known = slots.get(data.get("index", 0))
                if args and known is not None:
                    yield out.tool_arguments(known, args)
            elif kind == "message-end":
                reason = finish_reason(delta.get("finish_reason"))
                if slots and reason == "stop":
                    reason = "tool_calls"
                ended = True
                yield out.finish(reason)
                found = usage_of(delta.get("usage"))
                if with_usage and found:
                    yield out.usage(found)
                yield out.done
        if not ended:
            raise bad_upstream(KIND, "the stream ended before message-end")
    finally:
        await aclose(raw)


# -- errors ------------------------------------------------------------------------------------


def parse_error(raw: bytes, status: int) -> tuple[str, str | None]:
    """Cohere's {"message": "..."} (sometimes with an id): the message and a code for
    classify_status (context-length errors -> context_length_exceeded)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:500] or f"cohere answered {status}", None
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, str):
        return f"cohere answered {status}", None
    if status == 400 and _CONTEXT.search(message):
        return message, "context_length_exceeded"
    return message, None
