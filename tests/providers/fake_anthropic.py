"""A fake Anthropic Messages API on a loopback port, for tests that go over real HTTP.

It validates each request the way the real API does — required fields, unknown fields, the
x-api-key and anthropic-version headers, alternating roles starting with user, content block
shapes per role, tool_use/tool_result pairing and order, tools and tool_choice, extended
thinking's constraints — and answers a malformed one with 400 and Anthropic's error body, so a
translation bug fails the test that caused it (``rejections`` lists what was refused).

Answers are scripted per model (``script``) or, by default, derived from the request: a tool
call when tools are offered and the last turn is not a tool result, an answer quoting the tool
results after one, else a text reply naming the model. Streams use the real event sequence:
message_start, content_block_start / ping / content_block_delta (text_delta, thinking_delta,
signature_delta, input_json_delta) / content_block_stop, message_delta, message_stop; and an
``error`` event when scripted.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..background_app import BackgroundApp

API_KEY = "sk-ant-fake"
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
TOP_LEVEL = {"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
             "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier"}
BLOCKS = {"user": {"text", "image", "document", "tool_result"},
          "assistant": {"text", "tool_use", "thinking", "redacted_thinking"}}
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


class Invalid(Exception):
    """A request the real API would refuse with 400 invalid_request_error."""


@dataclass
class Reply:
    """What the fake answers to one request. ``content=None``: derived from the request."""

    content: list[dict] | None = None
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 12, "output_tokens": 6})
    status: int = 200
    error_type: str = "api_error"
    error_message: str = "fake anthropic error"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    error_after_events: int | None = None  # streams: an `error` event after this many events
    stream_error: tuple[str, str] = ("overloaded_error", "Overloaded")
    raw_body: bytes | None = None  # sent as it is (application/json) instead of a message


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeAnthropic(BackgroundApp):
    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.requests: list[Recorded] = []
        self.rejections: list[str] = []
        self.count = 10  # what POST /v1/messages/count_tokens answers
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)

    def script(self, model: str, *replies: Reply) -> None:
        """Queue what the next requests for ``model`` get."""
        self._scripts[model].extend(replies)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get("/v1/models", self._models)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return self._refuse(400, "invalid_request_error", "Invalid JSON in request body")
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        if request.headers.get("x-api-key") != self.api_key:
            return self._refuse(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self._refuse(400, "invalid_request_error", "anthropic-version: header is required")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._refuse(400, "invalid_request_error", "content-type must be application/json")
        try:
            validate(body)
        except Invalid as err:
            return self._refuse(400, "invalid_request_error", str(err))
        script = self._scripts.get(body["model"])
        reply = script.popleft() if script else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return error_response(reply.status, reply.error_type, reply.error_message, reply.headers)
        if reply.raw_body is not None:
            return web.Response(body=reply.raw_body, content_type="application/json")
        message = build_message(body, reply)
        if not body.get("stream"):
            return web.json_response(message, headers=reply.headers)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache", **reply.headers})
        await resp.prepare(request)
        for n, (name, data) in enumerate(stream_events(message)):
            if reply.error_after_events is not None and n == reply.error_after_events:
                kind, text = reply.stream_error
                error = {"type": "error", "error": {"type": kind, "message": text}}
                await resp.write(sse("error", error))
                break
            await resp.write(sse(name, data))
        await resp.write_eof()
        return resp

    async def _count_tokens(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        if request.headers.get("x-api-key") != self.api_key:
            return self._refuse(401, "authentication_error", "invalid x-api-key")
        extra = set(body) - {"model", "messages", "system", "tools", "tool_choice", "thinking",
                             "mcp_servers"}
        if extra or "messages" not in body:
            return self._refuse(400, "invalid_request_error",
                                f"{sorted(extra)[0] if extra else 'messages'}: invalid")
        return web.json_response({"input_tokens": self.count})

    async def _models(self, request: web.Request) -> web.Response:
        if request.headers.get("x-api-key") != self.api_key:
            return self._refuse(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self._refuse(400, "invalid_request_error", "anthropic-version: header is required")
        return web.json_response({"data": [{"type": "model", "id": "claude-x"}], "has_more": False,
                                  "first_id": "claude-x", "last_id": "claude-x"})

    def _refuse(self, status: int, kind: str, message: str) -> web.Response:
        self.rejections.append(message)
        return error_response(status, kind, message)


def error_response(status: int, kind: str, message: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message},
            "request_id": "req_fake"}
    return web.json_response(body, status=status, headers={"request-id": "req_fake",
                                                           **(headers or {})})


def sse(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


# -- answers -------------------------------------------------------------------------------


def build_message(body: dict, reply: Reply) -> dict:
    content, stop = reply.content, reply.stop_reason
    if content is None:
        content, stop = default_content(body)
    return {"id": f"msg_fake{time.monotonic_ns():x}", "type": "message", "role": "assistant",
            "model": body["model"], "content": content, "stop_reason": stop,
            "stop_sequence": reply.stop_sequence, "usage": dict(reply.usage)}


def default_content(body: dict) -> tuple[list[dict], str]:
    messages = body["messages"]
    last = messages[-1]
    blocks = last["content"] if isinstance(last["content"], list) else [
        {"type": "text", "text": last["content"]}]
    results = [b for b in blocks if b["type"] == "tool_result"]
    prefix: list[dict] = []
    if (body.get("thinking") or {}).get("type") == "enabled":
        prefix = [{"type": "thinking", "thinking": "Let me think this through.",
                   "signature": "sig-fake"}]
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    if results:
        quoted = "; ".join(_result_text(b) for b in results)
        return prefix + [{"type": "text", "text": f"Tool said: {quoted}"}], "end_turn"
    if tools and last["role"] == "user" and choice["type"] != "none":
        tool = next((t for t in tools if t["name"] == choice.get("name")), tools[0])
        text = " ".join(b.get("text", "") for b in blocks if b["type"] == "text")
        call = {"type": "tool_use", "id": f"toolu_fake{len(messages)}", "name": tool["name"],
                "input": sample_input(tool["input_schema"], text)}
        return prefix + [call], "tool_use"
    text = " ".join(b.get("text", "") for b in blocks if b["type"] == "text")
    return prefix + [{"type": "text", "text": f"Claude fake answer from {body['model']}: {text}"}], \
        "end_turn"


def _result_text(block: dict) -> str:
    content = block.get("content", "")
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if b.get("type") == "text")
    return content


def sample_input(schema: dict, text: str) -> dict:
    """An input that fits the tool's schema: strings get the user's words."""
    out: dict[str, Any] = {}
    props = schema.get("properties") or {}
    for name in schema.get("required") or list(props):
        kind = (props.get(name) or {}).get("type", "string")
        out[name] = {"string": text, "integer": 1, "number": 1.5, "boolean": True,
                     "array": [], "object": {}}.get(kind, text)
    return out


def stream_events(message: dict) -> list[tuple[str, dict]]:
    """The real event sequence for a whole message."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": 1}}
    out: list[tuple[str, dict]] = [("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(message["content"]):
        kind = block["type"]
        deltas: list[dict] = []
        if kind == "text":
            head = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"], 6)]
        elif kind == "thinking":
            head = {"type": "thinking", "thinking": ""}
            deltas = [{"type": "thinking_delta", "thinking": p}
                      for p in _pieces(block["thinking"], 8)]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "tool_use":
            head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in ["", *_pieces(json.dumps(block["input"]), 7)]]
        else:
            head = block
        out.append(("content_block_start",
                    {"type": "content_block_start", "index": i, "content_block": head}))
        if i == 0:
            out.append(("ping", {"type": "ping"}))
        out.extend(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d})
                   for d in deltas)
        out.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
        "usage": {"output_tokens": usage.get("output_tokens", 0)}}))
    out.append(("message_stop", {"type": "message_stop"}))
    return out


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


# -- validation ----------------------------------------------------------------------------


def validate(body: Any) -> None:
    """Raise Invalid with the real API's wording for the first problem found."""
    if not isinstance(body, dict):
        raise Invalid("Input should be a valid dictionary")
    for key in body:
        if key not in TOP_LEVEL:
            raise Invalid(f"{key}: Extra inputs are not permitted")
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            raise Invalid(f"{key}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise Invalid("model: Input should be a valid string")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise Invalid("max_tokens: Input should be greater than or equal to 1")
    _sampling(body)
    if "system" in body:
        _system(body["system"])
    if "metadata" in body:
        meta = body["metadata"]
        if not isinstance(meta, dict) or set(meta) - {"user_id"}:
            raise Invalid("metadata: only user_id is permitted")
    tools = _tools(body)
    thinking = _thinking(body)
    _messages(body["messages"], tools, thinking)


def _sampling(body: dict) -> None:
    for key, low, high in (("temperature", 0, 1), ("top_p", 0, 1)):
        value = body.get(key)
        if value is not None and (not isinstance(value, (int, float)) or not low <= value <= high):
            raise Invalid(f"{key}: range: {low}..{high}")
    if "top_k" in body and (not isinstance(body["top_k"], int) or body["top_k"] < 0):
        raise Invalid("top_k: Input should be greater than or equal to 0")
    if "stop_sequences" in body:
        stops = body["stop_sequences"]
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise Invalid("stop_sequences: Input should be a valid list of strings")
        if any(not s.strip() for s in stops):
            raise Invalid("stop_sequences: each stop sequence must contain non-whitespace")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise Invalid("stream: Input should be a valid boolean")


def _system(system: Any) -> None:
    if isinstance(system, str):
        return
    if not isinstance(system, list):
        raise Invalid("system: Input should be a valid string or list")
    for j, block in enumerate(system):
        _text_block(block, f"system.{j}")


def _tools(body: dict) -> dict[str, dict]:
    tools: dict[str, dict] = {}
    for j, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict):
            raise Invalid(f"tools.{j}: Input should be a valid dictionary")
        extra = set(tool) - {"name", "description", "input_schema", "cache_control", "type"}
        if extra:
            raise Invalid(f"tools.{j}.{sorted(extra)[0]}: Extra inputs are not permitted")
        if not isinstance(tool.get("name"), str) or not TOOL_NAME.match(tool["name"]):
            raise Invalid(f"tools.{j}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise Invalid(f"tools.{j}.input_schema.type: Input should be 'object'")
        if "description" in tool and not isinstance(tool["description"], str):
            raise Invalid(f"tools.{j}.description: Input should be a valid string")
        if tool["name"] in tools:
            raise Invalid(f"tools: Tool names must be unique. Duplicate: {tool['name']}")
        tools[tool["name"]] = tool
    choice = body.get("tool_choice")
    if choice is not None:
        if not tools:
            raise Invalid("tool_choice: may only be specified while providing tools")
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise Invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        if set(choice) - {"type", "name", "disable_parallel_tool_use"}:
            raise Invalid("tool_choice: Extra inputs are not permitted")
        if choice["type"] == "tool" and choice.get("name") not in tools:
            raise Invalid(f"tool_choice.name: tool '{choice.get('name')}' is not in tools")
        if choice["type"] != "tool" and "name" in choice:
            raise Invalid("tool_choice.name: Extra inputs are not permitted")
    return tools


def _thinking(body: dict) -> bool:
    thinking = body.get("thinking")
    if thinking is None or thinking == {"type": "disabled"}:
        return False
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled" \
            or set(thinking) != {"type", "budget_tokens"}:
        raise Invalid("thinking: Input should be {type: enabled, budget_tokens} or {type: disabled}")
    budget = thinking["budget_tokens"]
    if not isinstance(budget, int) or budget < 1024:
        raise Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if body["max_tokens"] <= budget:
        raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")
    if body.get("temperature") not in (None, 1):
        raise Invalid("`temperature` may only be set to 1 when thinking is enabled.")
    if "top_k" in body:
        raise Invalid("`top_k` cannot be set when thinking is enabled.")
    if body.get("top_p") is not None and body["top_p"] < 0.95:
        raise Invalid("`top_p` must be greater than or equal to 0.95 when thinking is enabled.")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise Invalid("Thinking may not be enabled when `tool_choice` forces tool use.")
    return True


def _messages(messages: Any, tools: dict, thinking: bool) -> None:
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: at least one message is required")
    previous_calls: set[str] = set()
    uses_tools = False
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise Invalid(f"messages.{i}: Input should be a valid dictionary")
        for key in message:
            if key not in ("role", "content"):
                raise Invalid(f"messages.{i}.{key}: Extra inputs are not permitted")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise Invalid('messages: first message must use the "user" role')
        if i and messages[i - 1].get("role") == role:
            raise Invalid('messages: roles must alternate between "user" and "assistant", but '
                          f'found multiple "{role}" roles in a row')
        final = i == len(messages) - 1
        blocks = _content(message.get("content"), role, i, final and role == "assistant")
        uses_tools = uses_tools or any(b["type"] in ("tool_use", "tool_result") for b in blocks)
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        if previous_calls - set(results):
            raise Invalid(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                          f"immediately after: {', '.join(sorted(previous_calls - set(results)))}. "
                          "Each `tool_use` block must have a corresponding `tool_result` block in "
                          "the next message.")
        for j, block in enumerate(blocks):
            if block["type"] == "tool_result" and block["tool_use_id"] not in previous_calls:
                raise Invalid(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                              f"`tool_result` blocks: {block['tool_use_id']}. Each `tool_result` "
                              "block must have a corresponding `tool_use` block in the previous "
                              "message.")
        kinds = [b["type"] for b in blocks]
        if kinds[: len(results)] != ["tool_result"] * len(results):
            raise Invalid(f"messages.{i}: tool_result blocks must come first in the content, "
                          "before any other block")
        previous_calls = {b["id"] for b in blocks if b["type"] == "tool_use"}
        if previous_calls and final:
            raise Invalid(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                          "immediately after")
    if uses_tools and not tools:
        raise Invalid("Requests which include `tool_use` or `tool_result` blocks must define tools.")
    if thinking:
        for i in range(len(messages) - 1, -1, -1):
            if messages[i]["role"] == "assistant":
                blocks = _content(messages[i]["content"], "assistant", i, False)
                if any(b["type"] == "tool_use" for b in blocks) and \
                        blocks[0]["type"] not in ("thinking", "redacted_thinking"):
                    raise Invalid(f"messages.{i}.content.0.type: Expected `thinking` or "
                                  f"`redacted_thinking`, but found `{blocks[0]['type']}`. When "
                                  "`thinking` is enabled, a final `assistant` message must start "
                                  "with a thinking block.")
                break


def _content(content: Any, role: str, i: int, prefill: bool) -> list[dict]:
    if isinstance(content, str):
        if not content and not prefill:
            raise Invalid(f"messages.{i}: all messages must have non-empty content except for "
                          "the optional final assistant message")
        if content and not content.strip():
            raise Invalid("messages: text content blocks must contain non-whitespace text")
        if prefill and content != content.rstrip():
            raise Invalid("messages: final assistant content cannot end with trailing whitespace")
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list) or (not content and not prefill):
        raise Invalid(f"messages.{i}: all messages must have non-empty content except for the "
                      "optional final assistant message")
    for j, block in enumerate(content):
        where = f"messages.{i}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in BLOCKS[role]:
            raise Invalid(f"{where}.type: '{kind}' blocks are not permitted in {role} messages")
        _block(block, kind, where)
    if prefill and content and content[-1]["type"] == "text" and \
            content[-1]["text"] != content[-1]["text"].rstrip():
        raise Invalid("messages: final assistant content cannot end with trailing whitespace")
    return content


def _block(block: dict, kind: str, where: str) -> None:
    if kind == "text":
        _text_block(block, where)
    elif kind == "image":
        _source(block, where, IMAGE_TYPES)
    elif kind == "document":
        _source(block, where, {"application/pdf"})
    elif kind == "tool_use":
        _only(block, {"type", "id", "name", "input", "cache_control"}, where)
        if not isinstance(block.get("id"), str) or not re.match(r"^[a-zA-Z0-9_-]+$", block["id"]):
            raise Invalid(f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict):
            raise Invalid(f"{where}: tool_use needs name (a string) and input (an object)")
    elif kind == "tool_result":
        _only(block, {"type", "tool_use_id", "content", "is_error", "cache_control"}, where)
        if not isinstance(block.get("tool_use_id"), str):
            raise Invalid(f"{where}.tool_use_id: Field required")
        content = block.get("content")
        if isinstance(content, list):
            for k, inner in enumerate(content):
                inner_kind = inner.get("type") if isinstance(inner, dict) else None
                if inner_kind not in ("text", "image"):
                    raise Invalid(f"{where}.content.{k}.type: Input should be 'text' or 'image'")
                _block(inner, inner_kind, f"{where}.content.{k}")
        elif content is not None and not isinstance(content, str):
            raise Invalid(f"{where}.content: Input should be a valid string or list")
    elif kind == "thinking":
        _only(block, {"type", "thinking", "signature"}, where)
        if not isinstance(block.get("thinking"), str) or not isinstance(block.get("signature"), str):
            raise Invalid(f"{where}: thinking needs thinking and signature strings")
    elif kind == "redacted_thinking":
        _only(block, {"type", "data"}, where)


def _text_block(block: Any, where: str) -> None:
    if not isinstance(block, dict) or block.get("type") != "text":
        raise Invalid(f"{where}.type: Input should be 'text'")
    _only(block, {"type", "text", "cache_control", "citations"}, where)
    if not isinstance(block.get("text"), str) or not block["text"]:
        raise Invalid(f"{where}: text content blocks must be non-empty")
    if not block["text"].strip():
        raise Invalid(f"{where}: text content blocks must contain non-whitespace text")


def _source(block: dict, where: str, media_types: set[str]) -> None:
    _only(block, {"type", "source", "cache_control", "title"}, where)
    source = block.get("source")
    if not isinstance(source, dict):
        raise Invalid(f"{where}.source: Field required")
    if source.get("type") == "base64":
        _only(source, {"type", "media_type", "data"}, where + ".source")
        if source.get("media_type") not in media_types:
            raise Invalid(f"{where}.source.base64.media_type: Input should be "
                          + ", ".join(sorted(media_types)))
        if not isinstance(source.get("data"), str) or not source["data"]:
            raise Invalid(f"{where}.source.base64.data: Field required")
    elif source.get("type") == "url":
        _only(source, {"type", "url"}, where + ".source")
        if not str(source.get("url", "")).startswith(("http://", "https://")):
            raise Invalid(f"{where}.source.url.url: Input should be a valid URL")
    else:
        raise Invalid(f"{where}.source.type: Input should be 'base64' or 'url'")


def _only(block: dict, allowed: set[str], where: str) -> None:
    extra = set(block) - allowed
    if extra:
        raise Invalid(f"{where}.{sorted(extra)[0]}: Extra inputs are not permitted")
