"""Google Gemini (Generative Language API, v1beta): generateContent, streamGenerateContent with
``alt=sse``, batchEmbedContents.

The key travels in the ``x-goog-api-key`` header, never in the URL, so it cannot leak into a
log line or an error message. Function calls carry no ids upstream: the adapter makes them up
and finds a tool result's function name again from the earlier call with that id. A call's
``thoughtSignature`` (which Gemini 3 requires back on the next turn) rides inside the id
after ``SIGNATURE``, so a client that echoes ids verbatim round-trips it without knowing.
"""

from __future__ import annotations

import mimetypes
import re
import time
from typing import Any, AsyncIterator, Mapping
from urllib.parse import quote

import aiohttp
import orjson

from ..errors import UpstreamError
from .base import ClientPool, Provider, ProviderSpec, Timeouts, UpstreamRequest, UpstreamResponse
from .http import ErrorParser, post_json, post_stream
from .native import (
    Chunks, aclose, arguments_of, assistant_message, bad_request, bad_upstream, call_id,
    completion, embedding_inputs, embeddings, image_url, include_usage, load_json, messages_of,
    parse_data_url, parts_of, primed, response_format_of, sampling_of, stream_error, text_of,
    tool_call, tool_calls_of, tool_choice_of, tools_of, unsupported_endpoint, usage,
)
from .sse import events

KIND = "gemini"
SIGNATURE = "__thought__"

FINISH = {
    "STOP": "stop", "MAX_TOKENS": "length",
    "SAFETY": "content_filter", "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
# reasoning_effort -> thinkingBudget, as Google's own OpenAI-compatible endpoint maps it.
THINKING_BUDGET = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
# The OpenAPI-subset Schema that functionDeclarations.parameters and responseSchema accept.
SCHEMA_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
    "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
})
_CONTEXT = re.compile(r"exceeds the maximum number of tokens|input token count|too many tokens|"
                      r"context (window|length)", re.IGNORECASE)


class GeminiProvider(Provider):
    capabilities = frozenset({"chat", "stream", "tools", "vision", "json", "reasoning", "embeddings",
                              "images"})
    base_url = "https://generativelanguage.googleapis.com"
    hosted = True

    def __init__(self, spec: ProviderSpec, clients: ClientPool) -> None:
        super().__init__(spec, clients)
        base = spec.base_url.rstrip("/")
        self._base = base if re.search(r"/v1(beta|alpha)?$", base) else base + "/v1beta"
        headers = {"Content-Type": "application/json", **spec.headers}
        if spec.api_key:
            headers["x-goog-api-key"] = spec.api_key
        self._headers = headers
        self._key = self.pool_key()
        self.file_uris = spec.options.get("file_uris") is True

    def url(self, model: str, method: str) -> str:
        name = model[len("models/"):] if model.startswith("models/") else model
        return f"{self._base}/models/{quote(name, safe='')}:{method}"

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        body = request.body
        model = str(body.get("model", ""))
        session = self.clients.session(self._key)
        retry_info: dict[str, float | None] = {}

        def parse(raw: bytes, status: int) -> tuple[str, str | None]:
            message, code, retry_info["delay"] = parse_error(raw, status)
            return message, code

        try:
            if request.endpoint == "embeddings":
                data = orjson.dumps(to_embed_request(body, model))
                raw, _ = await post_json(session, self.url(model, "batchEmbedContents"), data,
                                         self._headers, request.timeouts, parse)
                result = from_embed_response(load_json(KIND, raw), model, body.get("encoding_format"))
                return UpstreamResponse(200, body=orjson.dumps(result))
            if request.endpoint == "images":
                return await self._images(session, body, model, request.timeouts, parse)
            if request.endpoint != "chat":
                raise unsupported_endpoint(self.name, KIND, request.endpoint)
            data = orjson.dumps(to_gemini(body, self.file_uris, self.name))
            if request.stream:
                chunks, _ = await post_stream(
                    session, self.url(model, "streamGenerateContent") + "?alt=sse", data,
                    self._headers, request.timeouts, parse, expect="text/event-stream")
                stream = await primed(stream_chunks(chunks, model, include_usage(body)))
                return UpstreamResponse(200, stream=stream, media_type="text/event-stream")
            raw, _ = await post_json(session, self.url(model, "generateContent"), data,
                                     self._headers, request.timeouts, parse)
            return UpstreamResponse(200, body=orjson.dumps(from_gemini(load_json(KIND, raw), model)))
        except UpstreamError as err:
            if err.retry_after is None and retry_info.get("delay") is not None:
                err.retry_after = retry_info["delay"]
            raise


    async def _images(self, session: aiohttp.ClientSession, body: dict[str, Any], model: str,
                      timeouts: Timeouts, parse: ErrorParser) -> UpstreamResponse:
        """Imagen models through :predict; Gemini image models through generateContent with
        responseModalities IMAGE. Either way the client gets OpenAI's images answer (b64_json)."""
        prompt = str(body.get("prompt", ""))
        count = int(body.get("n") or 1)
        if model.removeprefix("models/").startswith("imagen"):
            request = {"instances": [{"prompt": prompt}], "parameters": {"sampleCount": count}}
            raw, _ = await post_json(session, self.url(model, "predict"), orjson.dumps(request),
                                     self._headers, timeouts, parse)
            images = [p.get("bytesBase64Encoded") for p in load_json(KIND, raw).get("predictions", [])]
        else:
            request = {"contents": [{"role": "user", "parts": [{"text": prompt}]}],
                       "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]}}
            images = []
            for _ in range(count):  # one image an answer
                raw, _ = await post_json(session, self.url(model, "generateContent"),
                                         orjson.dumps(request), self._headers, timeouts, parse)
                for candidate in load_json(KIND, raw).get("candidates") or []:
                    for part in (candidate.get("content") or {}).get("parts") or []:
                        inline = part.get("inlineData") or {}
                        if inline.get("data"):
                            images.append(inline["data"])
        if not images:
            raise UpstreamError(502, "server", f"{model} returned no image", from_upstream=False)
        result = {"created": int(time.time()), "data": [{"b64_json": b} for b in images if b]}
        return UpstreamResponse(200, body=orjson.dumps(result))


# -- OpenAI -> Gemini --------------------------------------------------------------------------


def to_gemini(body: dict[str, Any], file_uris: bool = False,
              provider: str = "NAME") -> dict[str, Any]:
    """An OpenAI chat request as a GenerateContentRequest. ``file_uris``: whether an image_url
    may name a file of the provider's account (the setting of the provider named
    ``provider``, which a refusal names; see _account_file)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, m in enumerate(messages_of(body)):
        role, param = m["role"], f"messages[{i}]"
        if role in ("system", "developer"):
            text = text_of(m.get("content"), param + ".content")
            if text:
                system.append({"text": text})
        elif role == "user":
            add("user", [_part(p, param, file_uris, provider)
                         for p in parts_of(m.get("content"), param + ".content")])
        elif role == "assistant":
            parts: list[dict[str, Any]] = []
            text = text_of(m.get("content"), param + ".content")
            if text:
                parts.append({"text": text})
            for j, call in enumerate(tool_calls_of(m, param)):
                names[call["id"]] = call["function"]["name"]
                fc: dict[str, Any] = {"functionCall": {
                    "name": call["function"]["name"],
                    "args": arguments_of(call, f"{param}.tool_calls[{j}]")}}
                if SIGNATURE in call["id"]:
                    fc["thoughtSignature"] = call["id"].split(SIGNATURE, 1)[1]
                parts.append(fc)
            add("model", parts)
        elif role == "tool":
            ident = m.get("tool_call_id")
            known = names.get(ident) if isinstance(ident, str) else None
            name = known or m.get("name")  # a tool message may name its function
            if not isinstance(name, str):
                raise bad_request(f"{param}.tool_call_id {ident!r} matches no earlier tool call",
                                  param + ".tool_call_id")
            add("user", [{"functionResponse": {
                "name": name, "response": _tool_result(m.get("content"), param)}}])
        else:
            raise bad_request(f"{param}: role {role!r} is not supported", param + ".role")
    if not contents:
        raise bad_request("the conversation needs at least one user message", "messages")
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = tools_of(body)
    if tools:
        out["tools"] = [{"functionDeclarations": [_declaration(t, i) for i, t in enumerate(tools)]}]
        mode, name = tool_choice_of(body)
        config: dict[str, Any] = {"mode": {"auto": "AUTO", "none": "NONE"}.get(mode, "ANY")}
        if name:
            config["allowedFunctionNames"] = [name]
        out["toolConfig"] = {"functionCallingConfig": config}
    generation = _generation_config(body)
    if generation:
        out["generationConfig"] = generation
    return out


def _part(part: dict[str, Any], param: str, file_uris: bool, provider: str) -> dict[str, Any]:
    if part["type"] == "text":
        return {"text": part["text"]}
    url = image_url(part)
    inline = parse_data_url(url, param)
    if inline:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    if not file_uris and _account_file(url):
        raise bad_request(f"{param}: provider '{provider}' takes no file URIs of its account: "
                          "Google would read them with the gateway's API key, whoever uploaded "
                          f"them (the operator can allow it: providers.{provider}.file_uris: "
                          "true); send the image as a data URL or a public https link", param)
    mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _account_file(url: str) -> bool:
    """Whether a fileUri names something of the account the gateway's key opens rather than a
    public link: a Files API URI (on a googleapis.com host), a gs:// object, any other scheme."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in ("http", "https"):
        return True
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0].lower()
    return host == "googleapis.com" or host.endswith(".googleapis.com")


def _tool_result(content: Any, param: str) -> dict[str, Any]:
    """functionResponse.response must be an object: a JSON object result as it is, any other
    text under "content"."""
    text = text_of(content, param + ".content")
    if text.lstrip().startswith("{"):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    return {"content": text}


def _declaration(fn: dict[str, Any], i: int) -> dict[str, Any]:
    out = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    params = fn.get("parameters")
    if isinstance(params, dict) and (params.get("properties") or params.get("type") not in (None, "object")):
        out["parameters"] = schema(params, f"tools[{i}].function.parameters")
    return out


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config = sampling_of(body, {
        "temperature": "temperature", "top_p": "topP", "seed": "seed",
        "presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty",
        "max_tokens": "maxOutputTokens", "stop": "stopSequences"})
    if body.get("n") not in (None, 1):
        config["candidateCount"] = body["n"]
    kind, json_schema, _ = response_format_of(body)
    if kind != "text":
        config["responseMimeType"] = "application/json"
    if json_schema is not None:
        config["responseSchema"] = schema(json_schema, "response_format.json_schema.schema")
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in THINKING_BUDGET:
            raise bad_request(f"reasoning_effort {effort!r} is not one of "
                              f"{', '.join(THINKING_BUDGET)}", "reasoning_effort")
        budget = THINKING_BUDGET[effort]
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": budget > 0}
    return config


def schema(node: Any, param: str, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """JSON Schema -> Gemini's Schema: local $refs inlined, type lists folded into
    ``nullable``, const into enum, upper-case types, unsupported keywords dropped."""
    if not isinstance(node, dict):
        return node
    root = root if root is not None else node
    if depth > 32:
        raise bad_request(f"{param}: the schema nests too deep (a recursive $ref?)", param)
    if "$ref" in node:
        ref = node["$ref"]
        target: Any = root
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise bad_request(f"{param}: only local $refs can be translated", param)
        for key in ref[2:].split("/"):
            target = target.get(key) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            raise bad_request(f"{param}: $ref {ref} points nowhere", param)
        return schema({**target, **{k: v for k, v in node.items() if k != "$ref"}}, param, root, depth + 1)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            types = value if isinstance(value, list) else [value]
            if "null" in types:
                out["nullable"] = True
            rest = [t for t in types if t != "null"]
            if rest:
                out["type"] = str(rest[0]).upper()
        elif key == "const":
            out["enum"] = [value]
        elif key in ("properties",):
            if not isinstance(value, dict):
                raise bad_request(f"{param}: properties must be an object", param)
            out[key] = {k: schema(v, param, root, depth + 1) for k, v in value.items()}
        elif key == "items":
            out[key] = schema(value, param, root, depth + 1)
        elif key in ("anyOf", "oneOf"):
            if not isinstance(value, list):
                raise bad_request(f"{param}: {key} must be an array of schemas", param)
            out["anyOf"] = [schema(v, param, root, depth + 1) for v in value]
        elif key in SCHEMA_KEYS:
            out[key] = value
    return out


def to_embed_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    name = model if model.startswith("models/") else f"models/{model}"
    extra: dict[str, Any] = {}
    if body.get("dimensions"):
        extra["outputDimensionality"] = body["dimensions"]
    if body.get("task_type"):
        extra["taskType"] = body["task_type"]
    return {"requests": [{"model": name, "content": {"parts": [{"text": t}]}, **extra}
                         for t in embedding_inputs(body)]}


# -- Gemini -> OpenAI --------------------------------------------------------------------------


def finish_reason(reason: str | None, has_calls: bool) -> str:
    if has_calls and reason in (None, "STOP"):
        return "tool_calls"
    return FINISH.get(reason or "STOP", "stop")


def usage_of(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not meta:
        return None
    thoughts = meta.get("thoughtsTokenCount")
    prompt = meta.get("promptTokenCount", 0) + meta.get("toolUsePromptTokenCount", 0)
    completion_tokens = meta.get("candidatesTokenCount", 0) + (thoughts or 0)
    return usage(prompt, completion_tokens, meta.get("totalTokenCount", prompt + completion_tokens),
                 cached=meta.get("cachedContentTokenCount"), reasoning=thoughts)


def _call_id(fc: dict[str, Any], part: dict[str, Any]) -> str:
    ident = fc.get("id") or call_id()
    return f"{ident}{SIGNATURE}{part['thoughtSignature']}" if part.get("thoughtSignature") else ident


def from_gemini(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A GenerateContentResponse as an OpenAI chat.completion."""
    candidates = data.get("candidates") or []
    if not candidates:
        if (data.get("promptFeedback") or {}).get("blockReason"):
            return completion(model, [(assistant_message("", []), "content_filter")],
                              usage_of(data.get("usageMetadata")), _ident(data))
        raise bad_upstream(KIND, "the answer has no candidates")
    choices = []
    for cand in sorted(candidates, key=lambda c: c.get("index", 0)):
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in (cand.get("content") or {}).get("parts") or []:
            if "functionCall" in part:
                fc = part["functionCall"]
                calls.append(tool_call(_call_id(fc, part), fc.get("name", ""), fc.get("args") or {}))
            elif isinstance(part.get("text"), str):
                (thoughts if part.get("thought") else texts).append(part["text"])
        message = assistant_message("".join(texts), calls, "".join(thoughts) or None)
        choices.append((message, finish_reason(cand.get("finishReason"), bool(calls))))
    return completion(model, choices, usage_of(data.get("usageMetadata")), _ident(data))


def _ident(data: dict[str, Any]) -> str | None:
    return f"chatcmpl-{data['responseId']}" if data.get("responseId") else None


def from_embed_response(data: dict[str, Any], model: str,
                        encoding_format: str | None) -> dict[str, Any]:
    try:
        vectors = [e["values"] for e in data["embeddings"]]
    except (KeyError, TypeError):
        raise bad_upstream(KIND, "the embeddings answer has no embeddings[].values") from None
    return embeddings(model, vectors, 0, encoding_format)


async def stream_chunks(raw: AsyncIterator[bytes], model: str, with_usage: bool) -> AsyncIterator[bytes]:
    """streamGenerateContent SSE (one GenerateContentResponse per event) -> OpenAI chunks, each
    yielded as soon as its event has arrived."""
    out: Chunks | None = None
    started: set[int] = set()
    slots: dict[int, int] = {}  # candidate -> tool calls so far
    finished: set[int] = set()
    last_usage = None
    try:
        async for event in events(raw):
            if event.data.strip() in ("", "[DONE]"):
                continue
            data = load_json(KIND, event.data)
            if isinstance(data, list):  # errors may come as a one-element array
                data = data[0] if data else {}
            if isinstance(data.get("error"), dict):
                message, code, _ = error_fields(data, 500)
                raise stream_error(KIND, int(data["error"].get("code") or 500), message, code)
            if out is None:
                out = Chunks(model, _ident(data))
            last_usage = usage_of(data.get("usageMetadata")) or last_usage
            candidates = data.get("candidates") or []
            if not candidates and (data.get("promptFeedback") or {}).get("blockReason"):
                if 0 not in started:
                    started.add(0)
                    yield out.role(0)
                finished.add(0)
                yield out.finish("content_filter", 0)
            for cand in candidates:
                idx = cand.get("index", 0)
                if idx not in started:
                    started.add(idx)
                    yield out.role(idx)
                for part in (cand.get("content") or {}).get("parts") or []:
                    if "functionCall" in part:
                        fc = part["functionCall"]
                        slot = slots.get(idx, 0)
                        slots[idx] = slot + 1
                        args = orjson.dumps(fc.get("args") or {}).decode()
                        yield out.tool_start(slot, _call_id(fc, part), fc.get("name", ""), args, idx)
                    elif part.get("text"):
                        if part.get("thought"):
                            yield out.reasoning(part["text"], idx)
                        else:
                            yield out.content(part["text"], idx)
                if cand.get("finishReason") and idx not in finished:
                    finished.add(idx)
                    yield out.finish(finish_reason(cand["finishReason"], idx in slots), idx)
        if out is None or not finished:
            raise bad_upstream(KIND, "the stream ended before a finish reason")
        if with_usage and last_usage:
            yield out.usage(last_usage)
        yield out.done
    finally:
        await aclose(raw)


# -- errors ------------------------------------------------------------------------------------


def error_fields(data: Any, status: int) -> tuple[str, str | None, float | None]:
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return f"gemini answered {status}", None, None
    message = str(err.get("message") or f"gemini answered {status}")
    code = err.get("status")
    delay = None
    for detail in err.get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            m = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(detail.get("retryDelay", "")))
            delay = float(m.group(1)) if m else None
    if status == 400 and _CONTEXT.search(message):
        code = "context_length_exceeded"
    elif re.search(r"safety|blocked|prohibited", message, re.IGNORECASE) and status == 400:
        code = "content_filter"
    return message, code, delay


def parse_error(raw: bytes, status: int) -> tuple[str, str | None, float | None]:
    """Google's {"error": {"code", "message", "status", "details"}}: message, a code for
    classify_status, and RetryInfo's retryDelay in seconds."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:500] or f"gemini answered {status}", None, None
    return error_fields(data, status)
