"""Amazon Bedrock Runtime: Converse and ConverseStream, signed with AWS SigV4.

Credentials come from the provider config (``aws_access_key_id``, ``aws_secret_access_key``,
``aws_session_token``; ``${ENV}`` and ``secret:`` references are resolved by then), else from
the standard ``AWS_*`` environment variables. The region from ``region``, else ``AWS_REGION``
or ``AWS_DEFAULT_REGION``; without any the config is refused.

Converse has no JSON mode: ``response_format`` without tools is served with a forced tool whose
input schema is the requested one (``{"type": "object"}`` for json_object), and its input is
returned as the message content. With tools, the JSON instruction goes into the system prompt.
ConverseStream answers in AWS's binary event-stream framing (eventstream.py); an exception
frame mid-stream raises UpstreamError from the iterator.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, AsyncIterator, Mapping
from urllib.parse import quote

import orjson
import yarl

from ..errors import UpstreamError
from .base import ClientPool, Provider, ProviderSpec, UpstreamRequest, UpstreamResponse
from .eventstream import Decoder, EventStreamError
from ..errors import openai_error_body
from .http import post_json, post_stream
from .native import (
    Chunks, aclose, arguments_of, assistant_message, bad_request, bad_upstream, completion,
    image_url, include_usage, load_json, messages_of, parse_data_url, parts_of, primed,
    response_format_of, sampling_of, single_choice, stream_error, text_of, tool_call,
    tool_calls_of, tool_choice_of, tools_of, unsupported_endpoint, usage,
)
from .sigv4 import Credentials, sign

KIND = "bedrock"
SERVICE = "bedrock"
JSON_TOOL = "gateway_json_response"
DEFAULT_BASE_URL = "https://bedrock-runtime.{region}.amazonaws.com"

FINISH = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
}
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg",
                 "image/gif": "gif", "image/webp": "webp"}
# Exception frames of ConverseStream -> HTTP status they would have had.
EXCEPTION_STATUS = {
    "throttlingException": 429, "validationException": 400, "accessDeniedException": 403,
    "resourceNotFoundException": 404, "modelTimeoutException": 408,
    "serviceUnavailableException": 503, "internalServerException": 500,
    "modelStreamErrorException": 502, "modelErrorException": 502,
}
_CONTEXT = re.compile(r"input is too long|too many input tokens|prompt is too long|"
                      r"context (window|length)|maximum context", re.IGNORECASE)
_FILTER = re.compile(r"content filter|guardrail|blocked by", re.IGNORECASE)
_TOOL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


def region_of(options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return options.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None


class BedrockProvider(Provider):
    capabilities = frozenset({"chat", "stream", "tools", "vision", "json"})
    base_url = DEFAULT_BASE_URL

    @classmethod
    def validate_options(cls, type_name: str, options: Mapping[str, Any]) -> list[str]:
        problems = []
        region = region_of(options)
        if not region:
            problems.append("needs region (or the AWS_REGION environment variable)")
        elif not _REGION.match(str(region)):
            problems.append(f"region {region!r} does not look like an AWS region (us-east-1)")
        if bool(options.get("aws_access_key_id")) != bool(options.get("aws_secret_access_key")):
            problems.append("aws_access_key_id and aws_secret_access_key go together")
        batch = options.get("bedrock_batch") or {}
        if options.get("batch") == "native" and not (batch.get("s3_uri") and batch.get("role_arn")):
            problems.append("batch: native needs bedrock_batch: {s3_uri, role_arn} (the S3 "
                            "place of the jobs' files and the role Bedrock runs them as)")
        return problems

    def __init__(self, spec: ProviderSpec, clients: ClientPool) -> None:
        super().__init__(spec, clients)
        self.region = str(region_of(spec.options) or "us-east-1")
        self.s3_images = spec.options.get("s3_images") is True
        self._base = spec.base_url.replace("{region}", self.region).rstrip("/")
        self._creds = Credentials.resolve(spec.options)
        self._headers = {"Content-Type": "application/json", **spec.headers}
        self._key = self.pool_key()

    def url(self, model: str, action: str) -> yarl.URL:
        """Path as botocore sends it: the model id percent-encoded (``:`` -> ``%3A``)."""
        return yarl.URL(f"{self._base}/model/{quote(model, safe='')}/{action}", encoded=True)

    def passthrough_headers(self) -> dict[str, str] | None:
        return None  # every request is signed (SigV4) for its own body and path

    def signed_headers(self, url: yarl.URL, data: bytes) -> dict[str, str]:
        creds = self._creds or Credentials.resolve({})
        if creds is None:
            raise UpstreamError(
                401, "client", "bedrock: no AWS credentials (set aws_access_key_id and "
                "aws_secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                body=openai_error_body("bedrock: no AWS credentials configured",
                                       "authentication_error", "missing_credentials"),
                headers={"Content-Type": "application/json"})
        host = url.host
        assert host is not None  # base_url is absolute (the compiler checks it)
        if not url.is_default_port():
            host = f"{host}:{url.port}"
        return sign("POST", host, url.raw_path, url.raw_query_string, self._headers, data, creds,
                    self.region, SERVICE)

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        if request.endpoint != "chat":
            raise unsupported_endpoint(self.name, KIND, request.endpoint)
        body = request.body
        model = str(body.get("model", ""))
        payload, json_tool = to_bedrock(body, self.s3_images, self.name)
        data = orjson.dumps(payload)
        session = self.clients.session(self._key)
        if request.stream:
            url = self.url(model, "converse-stream")
            chunks, _ = await post_stream(session, url, data, self.signed_headers(url, data),
                                          request.timeouts, parse_error)
            stream = await primed(stream_chunks(chunks, model, include_usage(body), json_tool))
            return UpstreamResponse(200, stream=stream, media_type="text/event-stream")
        url = self.url(model, "converse")
        raw, _ = await post_json(session, url, data, self.signed_headers(url, data),
                                 request.timeouts, parse_error)
        return UpstreamResponse(200, body=orjson.dumps(from_bedrock(load_json(KIND, raw), model, json_tool)))


# -- OpenAI -> Bedrock -------------------------------------------------------------------------


def tool_id(ident: str) -> str:
    """toolUseId allows [A-Za-z0-9_-]{1,64}: other ids (from another provider's history) are
    replaced by a stable digest, the same for the call and its result."""
    return ident if _TOOL_ID.match(ident) else "t" + hashlib.sha256(ident.encode()).hexdigest()[:40]


def to_bedrock(body: dict[str, Any], s3_images: bool = False,
               provider: str = "NAME") -> tuple[dict[str, Any], str | None]:
    """An OpenAI chat request as a Converse request, and the forced JSON tool's name (if any).
    ``s3_images``: whether image_url may name an ``s3://`` object (the setting of the provider
    named ``provider``, which a refusal names)."""
    single_choice(body, KIND)
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    history_tools: dict[str, None] = {}  # tool names the conversation used, in order

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for i, m in enumerate(messages_of(body)):
        role, param = m["role"], f"messages[{i}]"
        if role in ("system", "developer"):
            text = text_of(m.get("content"), param + ".content")
            if text.strip():
                system.append({"text": text})
        elif role == "user":
            add("user", [_block(p, f"{param}.content", s3_images, provider)
                         for p in parts_of(m.get("content"), param + ".content")
                         if p["type"] != "text" or p["text"].strip()])
        elif role == "assistant":
            text = text_of(m.get("content"), param + ".content")
            blocks: list[dict[str, Any]] = [{"text": text}] if text.strip() else []
            for j, call in enumerate(tool_calls_of(m, param)):
                history_tools[call["function"]["name"]] = None
                blocks.append({"toolUse": {"toolUseId": tool_id(call["id"]), "name": call["function"]["name"],
                                           "input": arguments_of(call, f"{param}.tool_calls[{j}]")}})
            add("assistant", blocks)
        elif role == "tool":
            if not m.get("tool_call_id"):
                raise bad_request(f"{param} needs a tool_call_id", param + ".tool_call_id")
            text = text_of(m.get("content"), param + ".content")
            add("user", [{"toolResult": {"toolUseId": tool_id(m["tool_call_id"]),
                                         "content": [{"text": text or "(empty)"}]}}])
        else:
            raise bad_request(f"{param}: role {role!r} is not supported", param + ".role")
    out: dict[str, Any] = {"messages": messages}
    inference = sampling_of(body, {"max_tokens": "maxTokens", "temperature": "temperature",
                                    "top_p": "topP", "stop": "stopSequences"})
    if inference:
        out["inferenceConfig"] = inference
    tools = tools_of(body)
    if tools:
        mode, name = tool_choice_of(body)
        if mode != "none" or history_tools:
            config: dict[str, Any] = {"tools": [_tool_spec(t) for t in tools]}
            if mode == "required":
                config["toolChoice"] = {"any": {}}
            elif mode == "function":
                config["toolChoice"] = {"tool": {"name": name}}
            out["toolConfig"] = config
    elif history_tools:
        # Converse refuses toolUse blocks without a toolConfig: declare the history's tools.
        out["toolConfig"] = {"tools": [_tool_spec({"name": n}) for n in history_tools]}
    kind, schema, _ = response_format_of(body)
    json_tool = None
    if kind != "text" and "toolConfig" in out:
        rule = "Answer with a single JSON object and nothing else."
        if schema:
            rule += " It must match this JSON Schema: " + orjson.dumps(schema).decode()
        system.append({"text": rule})
    elif kind != "text":
        json_tool = JSON_TOOL
        out["toolConfig"] = {
            "tools": [_tool_spec({"name": JSON_TOOL, "description": "Return the answer as JSON.",
                                  "parameters": schema or {"type": "object"}})],
            "toolChoice": {"tool": {"name": JSON_TOOL}},
        }
    if system:
        out["system"] = system
    return out, json_tool


def _block(part: dict[str, Any], param: str, s3_images: bool, provider: str) -> dict[str, Any]:
    if part["type"] == "text":
        return {"text": part["text"]}
    url = image_url(part)
    if url.startswith("s3://"):
        if not s3_images:  # Bedrock reads the object as the gateway: any bucket it may read
            raise bad_request(f"{param}: provider '{provider}' takes no s3:// images: Bedrock "
                              "would read them with the gateway's AWS credentials, from any "
                              "bucket those may read (the operator can allow it: providers."
                              f"{provider}.s3_images: true); send the image as a data URL", param)
        ext = url.rsplit(".", 1)[-1].lower()
        fmt = {"jpg": "jpeg"}.get(ext, ext)
        if fmt not in IMAGE_FORMATS.values():
            raise bad_request(f"{param}: cannot tell the image format of {url}", param)
        return {"image": {"format": fmt, "source": {"s3Location": {"uri": url}}}}
    inline = parse_data_url(url, param)
    if inline is None:
        raise bad_request(f"{param}: bedrock takes images as data URLs (or s3:// URIs), not links",
                          param)
    given = IMAGE_FORMATS.get(inline[0])
    if given is None:
        raise bad_request(f"{param}: image type {inline[0]} is not one of png, jpeg, gif, webp", param)
    return {"image": {"format": given, "source": {"bytes": inline[1]}}}


def _tool_spec(fn: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": fn["name"],
                            "inputSchema": {"json": fn.get("parameters")
                                            or {"type": "object", "properties": {}}}}
    if fn.get("description"):
        spec["description"] = fn["description"]
    return {"toolSpec": spec}


# -- Bedrock -> OpenAI -------------------------------------------------------------------------


def finish_reason(reason: str | None, json_tool: str | None = None) -> str:
    if reason == "tool_use" and json_tool:
        return "stop"
    return FINISH.get(reason or "end_turn", "stop")


def usage_of(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not data:
        return None
    prompt, output = data.get("inputTokens", 0), data.get("outputTokens", 0)
    cached = data.get("cacheReadInputTokens")
    return usage(prompt + (data.get("cacheWriteInputTokens") or 0) + (cached or 0), output,
                 data.get("totalTokens"), cached=cached)


def from_bedrock(data: dict[str, Any], model: str, json_tool: str | None = None) -> dict[str, Any]:
    """A Converse answer as an OpenAI chat.completion."""
    message = ((data.get("output") or {}).get("message")) if isinstance(data, dict) else None
    if not isinstance(message, dict):
        raise bad_upstream(KIND, "the answer has no output.message")
    texts, thoughts, calls = [], [], []
    for block in message.get("content") or []:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            if json_tool and use.get("name") == json_tool:
                texts.append(orjson.dumps(use.get("input") or {}).decode())
            else:
                calls.append(tool_call(use.get("toolUseId", ""), use.get("name", ""), use.get("input") or {}))
        elif "reasoningContent" in block:
            thoughts.append(((block["reasoningContent"] or {}).get("reasoningText") or {}).get("text", ""))
    reply = assistant_message("".join(texts), calls, "".join(thoughts) or None)
    return completion(model, [(reply, finish_reason(data.get("stopReason"), json_tool))],
                      usage_of(data.get("usage")))


async def stream_chunks(raw: AsyncIterator[bytes], model: str, with_usage: bool,
                        json_tool: str | None = None) -> AsyncIterator[bytes]:
    """ConverseStream event-stream frames -> OpenAI chunks, yielded as frames arrive."""
    out = Chunks(model)
    decoder = Decoder()
    slots: dict[int, int] = {}  # contentBlockIndex -> tool call index
    json_blocks: set[int] = set()
    started = stopped = False
    try:
        async for piece in raw:
            try:
                messages = decoder.feed(piece)
            except EventStreamError as exc:
                raise bad_upstream(KIND, f"unreadable event stream: {exc}") from None
            for msg in messages:
                if msg.message_type == "exception":
                    kind = str(msg.headers.get(":exception-type", "internalServerException"))
                    text, code = parse_error(msg.payload, EXCEPTION_STATUS.get(kind, 500))
                    raise stream_error(KIND, EXCEPTION_STATUS.get(kind, 500), f"{kind}: {text}", code)
                if msg.message_type == "error":
                    raise stream_error(KIND, 500, str(msg.headers.get(":error-message", "stream error")),
                                       str(msg.headers.get(":error-code") or "") or None)
                event = load_json(KIND, msg.payload) if msg.payload else {}
                event_type = msg.event_type
                if not started:
                    started = True
                    yield out.role()
                if event_type == "contentBlockStart":
                    use = (event.get("start") or {}).get("toolUse")
                    index = event.get("contentBlockIndex", 0)
                    if use and json_tool and use.get("name") == json_tool:
                        json_blocks.add(index)
                    elif use:
                        slots[index] = len(slots)
                        yield out.tool_start(slots[index], use.get("toolUseId", ""), use.get("name", ""))
                elif event_type == "contentBlockDelta":
                    delta, index = event.get("delta") or {}, event.get("contentBlockIndex", 0)
                    if delta.get("text"):
                        yield out.content(delta["text"])
                    elif "toolUse" in delta:
                        piece_ = (delta["toolUse"] or {}).get("input") or ""
                        if index in json_blocks and piece_:
                            yield out.content(piece_)
                        elif index in slots and piece_:
                            yield out.tool_arguments(slots[index], piece_)
                    elif "reasoningContent" in delta and (delta["reasoningContent"] or {}).get("text"):
                        yield out.reasoning(delta["reasoningContent"]["text"])
                elif event_type == "messageStop":
                    stopped = True
                    yield out.finish(finish_reason(event.get("stopReason"), json_tool))
                elif event_type == "metadata":
                    found = usage_of(event.get("usage"))
                    if with_usage and found:
                        yield out.usage(found)
        if decoder.pending:
            raise bad_upstream(KIND, "the event stream was cut in the middle of a message")
        if not stopped:
            raise bad_upstream(KIND, "the stream ended before messageStop")
        yield out.done
    finally:
        await aclose(raw)


# -- errors ------------------------------------------------------------------------------------


def parse_error(raw: bytes, status: int) -> tuple[str, str | None]:
    """Bedrock's {"message": "..."}: the message and a code for classify_status (input too
    long -> context_length_exceeded, guardrail or content filter -> content_filter)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:500] or f"bedrock answered {status}", None
    message = None
    if isinstance(data, dict):
        message = data.get("message") or data.get("Message")
    if not isinstance(message, str):
        return f"bedrock answered {status}", None
    if status == 400 and _CONTEXT.search(message):
        return message, "context_length_exceeded"
    if status == 400 and _FILTER.search(message):
        return message, "content_filter"
    return message, None
