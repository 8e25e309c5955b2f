"""Shared by the adapters that translate OpenAI's chat format into another wire format and back
(anthropic, gemini, cohere, bedrock): refusing what cannot be translated, reading the OpenAI
request, building OpenAI answers and stream chunks.

Everything here is a pure function or a small value object, so the translations can be tested
without any network.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import time
import uuid
from typing import Any, AsyncIterator
from urllib.parse import unquote_to_bytes

import orjson

from ..errors import UpstreamError, classify_status
from ..errors import openai_error_body
from .http import error_type
from .sse import DONE, chunk

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)


class TranslationError(UpstreamError):
    """A request this provider cannot take, refused before sending: a 400 the client sees as-is
    (class ``client``, so no policy retries it or falls back on it unless it lists 400).
    ``param`` names the offending part of the request."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value"):
        body = openai_error_body(message, "invalid_request_error", code, param)
        super().__init__(400, "client", message, body=body,
                         headers={"Content-Type": "application/json"})
        self.param = param
        self.code = code


bad_request = TranslationError  # how the adapters raise it: ``raise bad_request(message, param)``


def unsupported_endpoint(provider: str, kind: str, endpoint: str) -> TranslationError:
    return bad_request(f"provider '{provider}' ({kind}) has no {endpoint} endpoint: route it to "
                       "a provider that has one", code="unsupported_endpoint")


def bad_upstream(kind: str, what: str) -> UpstreamError:
    """The upstream answered 2xx with something that cannot be read: a server-class failure."""
    message = f"{kind}: {what}"
    return UpstreamError(502, "server", message,
                         body=openai_error_body(message, "api_error", "bad_upstream_response"),
                         headers={"Content-Type": "application/json"})


def stream_error(kind: str, status: int, message: str, code: str | None = None) -> UpstreamError:
    """An error the upstream reported inside a stream, classified like an HTTP error."""
    return UpstreamError(status, classify_status(status, code), f"{kind}: {message}",
                         body=openai_error_body(message, error_type(status), code),
                         headers={"Content-Type": "application/json"})


def load_json(kind: str, raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_upstream(kind, "the answer is not valid JSON") from None


# -- the OpenAI request ---------------------------------------------------------------------


def messages_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", "messages", "invalid_type")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad_request(f"messages[{i}] must be an object with a 'role'", f"messages[{i}]",
                              "invalid_type")
    return messages


def text_of(content: Any, param: str) -> str:
    """A string, or the concatenated text of a list of text parts (system, tool messages)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise bad_request(f"{param} may contain only text parts", param)
        return "".join(texts)
    raise bad_request(f"{param} must be a string or an array of parts", param, "invalid_type")


def parts_of(content: Any, param: str) -> list[dict[str, Any]]:
    """User content as a list of OpenAI parts ({"type": "text"|"image_url", ...})."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad_request(f"{param} must be a string or an array of parts", param, "invalid_type")
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        if kind == "image_url" and isinstance(_image_url(part), str):
            continue
        raise bad_request(f"{param}[{i}]: unsupported content part {kind!r}", f"{param}[{i}]")
    return content


def _image_url(part: dict[str, Any]) -> Any:
    image = part.get("image_url")
    return image.get("url") if isinstance(image, dict) else image


def image_url(part: dict[str, Any]) -> str:
    """The URL of an image part (``parts_of`` has checked that it is a string)."""
    url = _image_url(part)
    if not isinstance(url, str):
        raise bad_request("image_url.url must be a string", "messages", "invalid_type")
    return url


def parse_data_url(url: str, param: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` -> ("image/png", "AAAA"); None for other URLs.
    Non-base64 data URLs are re-encoded; malformed base64 is a 400 naming ``param``."""
    m = _DATA_URL.match(url)
    if not m:
        return None
    mime = (m["mime"] or "text/plain").lower()
    data = url[m.end():]
    if m["b64"]:
        data = re.sub(r"\s+", "", data)
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"{param}: the data URL holds invalid base64", param) from None
        return mime, data
    return mime, base64.b64encode(unquote_to_bytes(data)).decode("ascii")


def tool_calls_of(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise bad_request(f"{param}.tool_calls must be an array", param, "invalid_type")
    for i, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not call.get("id"):
            raise bad_request(f"{param}.tool_calls[{i}] needs an id and function.name",
                              f"{param}.tool_calls[{i}]")
    return calls


def arguments_of(call: dict[str, Any], param: str) -> dict[str, Any]:
    """A tool call's JSON-string arguments as an object."""
    raw = call["function"].get("arguments") or "{}"
    if isinstance(raw, dict):
        return raw
    try:
        value = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        raise bad_request(f"{param}: function.arguments is not valid JSON", param) from None
    if not isinstance(value, dict):
        raise bad_request(f"{param}: function.arguments must be a JSON object", param)
    return value


def tools_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's function tools: [{"name", "description"?, "parameters"?}]."""
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise bad_request("'tools' must be an array", "tools", "invalid_type")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" \
                or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad_request(f"tools[{i}] must be a function tool with a name", f"tools[{i}]")
        out.append(fn)
    return out


def tool_choice_of(body: dict[str, Any]) -> tuple[str, str | None]:
    """("auto"|"none"|"required"|"function", name) from OpenAI's tool_choice."""
    choice = body.get("tool_choice")
    if choice is None or choice == "auto":
        return "auto", None
    if choice in ("none", "required"):
        return choice, None
    if isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        return "function", choice["function"]["name"]
    raise bad_request("tool_choice must be auto, none, required or a function", "tool_choice")


def stop_of(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise bad_request("stop must be a string or an array of strings", "stop", "invalid_type")


def max_tokens_of(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise bad_request("max_tokens must be a positive integer", "max_tokens")
    return value


def sampling_of(body: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The request's generation settings under the provider's names: ``names`` maps OpenAI's
    (``max_tokens`` and ``stop`` read as max_tokens_of and stop_of do) to the provider's.
    What the client left out stays out, so the provider's defaults apply."""
    out: dict[str, Any] = {}
    for ours, theirs in names.items():
        if ours == "max_tokens":
            value: Any = max_tokens_of(body)
        elif ours == "stop":
            value = stop_of(body) or None
        else:
            value = body.get(ours)
        if value is not None:
            out[theirs] = value
    return out


def response_format_of(body: dict[str, Any]) -> tuple[str, dict[str, Any] | None, str | None]:
    """("text"|"json_object"|"json_schema", schema, name)."""
    fmt = body.get("response_format")
    if not fmt:
        return "text", None, None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("text", "json_object"):
        return kind, None, None
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad_request("response_format.json_schema.schema must be an object",
                              "response_format")
        return kind, schema, spec.get("name") or "response"
    raise bad_request(f"unsupported response_format type {kind!r}", "response_format")


def single_choice(body: dict[str, Any], kind: str) -> None:
    n = body.get("n")
    if n not in (None, 1):
        raise bad_request(f"{kind} returns one choice: n must be 1", "n")


def include_usage(body: dict[str, Any]) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


# -- OpenAI answers -------------------------------------------------------------------------


def new_id(prefix: str = "chatcmpl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def usage(prompt: int, completion: int, total: int | None = None, *, cached: int | None = None,
          reasoning: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": total if total is not None else prompt + completion}
    if cached is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def assistant_message(text: str | None, tool_calls: list[dict[str, Any]],
                      reasoning: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if tool_calls else "")}
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def tool_call(id_: str, name: str, arguments: Any) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


def completion(model: str, choices: list[tuple[dict[str, Any], str]], usage_: dict[str, Any] | None,
               id_: str | None = None) -> dict[str, Any]:
    """A chat.completion from (message, finish_reason) per choice."""
    return {
        "id": id_ or new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": i, "message": m, "finish_reason": f, "logprobs": None}
                    for i, (m, f) in enumerate(choices)],
        "usage": usage_,
    }


def embeddings(model: str, vectors: list[list[float]], prompt_tokens: int = 0,
               encoding_format: str | None = None) -> dict[str, Any]:
    """OpenAI's embeddings answer; ``encoding_format: base64`` packs little-endian float32, as
    OpenAI does (the official Python client asks for it by default)."""
    packed: list[list[float]] | list[str] = vectors
    if encoding_format == "base64":
        packed = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode("ascii") for v in vectors]
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(packed)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def embedding_inputs(body: dict[str, Any]) -> list[str]:
    inputs = body.get("input")
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, list) and inputs and all(isinstance(i, str) for i in inputs):
        return inputs
    raise bad_request("input must be a string or a non-empty array of strings (token arrays "
                      "cannot be translated for this provider)", "input", "invalid_type")


class Chunks:
    """Builds chat.completion.chunk SSE events for one streamed answer."""

    def __init__(self, model: str, id_: str | None = None):
        self.id = id_ or new_id()
        self.model = model
        self.created = int(time.time())

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return chunk({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                      "model": self.model, "choices": choices, **extra})

    def delta(self, index: int = 0, finish: str | None = None, **delta: Any) -> bytes:
        return self._event([{"index": index, "delta": delta, "finish_reason": finish,
                             "logprobs": None}])

    def role(self, index: int = 0) -> bytes:
        return self.delta(index, role="assistant", content="")

    def content(self, text: str, index: int = 0) -> bytes:
        return self.delta(index, content=text)

    def reasoning(self, text: str, index: int = 0) -> bytes:
        return self.delta(index, reasoning_content=text)

    def tool_start(self, slot: int, id_: str, name: str, arguments: str = "", index: int = 0) -> bytes:
        return self.delta(index, tool_calls=[{"index": slot, "id": id_, "type": "function",
                                              "function": {"name": name, "arguments": arguments}}])

    def tool_arguments(self, slot: int, arguments: str, index: int = 0) -> bytes:
        return self.delta(index, tool_calls=[{"index": slot, "function": {"arguments": arguments}}])

    def finish(self, reason: str, index: int = 0) -> bytes:
        return self.delta(index, finish=reason)

    def usage(self, usage_: dict[str, Any]) -> bytes:
        return self._event([], usage=usage_)

    done = DONE


async def aclose(chunks: Any) -> None:
    """Close an upstream byte iterator early (releases its connection at once)."""
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


async def primed(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Wait for the first translated chunk before answering, so an error the upstream reports
    as its very first event is still an ordinary failed attempt (retry and fallback can act)."""
    iterator = chunks.__aiter__()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        first = None

    async def rest() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield first
            async for piece in iterator:
                yield piece
        finally:
            await aclose(iterator)

    return rest()
