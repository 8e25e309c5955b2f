"""OpenAI and every provider that speaks its HTTP API (presets differ in base_url and auth).

Bodies pass through untouched apart from the model name, and streams are forwarded chunk by
chunk as they arrive: no parsing on the way back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import aiohttp
import orjson

from .base import (
    ENDPOINT_PATHS, ClientPool, NativeBody, Provider, ProviderSpec, UpstreamRequest,
    UpstreamResponse,
)
from .http import parse_openai_error, post_json, post_stream
from .native import bad_request
from .sse import until_complete


@dataclass(frozen=True, slots=True)
class Preset:
    base_url: str | None  # None: base_url is required in the config
    needs_key: bool  # a hosted API: refuses requests without a key


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1", True),
    "openai-compatible": Preset(None, False),
    "mistral": Preset("https://api.mistral.ai/v1", True),
    "groq": Preset("https://api.groq.com/openai/v1", True),
    "together": Preset("https://api.together.xyz/v1", True),
    "fireworks": Preset("https://api.fireworks.ai/inference/v1", True),
    "deepseek": Preset("https://api.deepseek.com/v1", True),
    "xai": Preset("https://api.x.ai/v1", True),
    "openrouter": Preset("https://openrouter.ai/api/v1", True),
    "perplexity": Preset("https://api.perplexity.ai", True),
    "ollama": Preset("http://127.0.0.1:11434/v1", False),
    "vllm": Preset("http://127.0.0.1:8000/v1", False),
    "llamacpp": Preset("http://127.0.0.1:8080/v1", False),
    "lmstudio": Preset("http://127.0.0.1:1234/v1", False),
}

RESPONSES_API = "openai.responses"  # NativeBody.api of a Responses request (POST /v1/responses)
# Types that get a Responses request as it is, at {base_url}/responses: OpenAI's own API.
# (Other servers' Responses endpoints cover parts of it; they get the chat translation.)
RESPONSES_TYPES = frozenset({"openai"})
# What ends a Responses stream: its last lifecycle event, or an error event.
_RESPONSES_END = re.compile(rb'"type"\s*:\s*"(response\.(completed|incomplete|failed)|error)"')

# Types whose servers answer POST {base_url}/rerank in Cohere's shape (vLLM, llama.cpp with
# --reranking, Together; openai-compatible for any other such server).
RERANK_TYPES = frozenset({"openai-compatible", "vllm", "llamacpp", "together"})


async def pass_through(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str],
                       request: UpstreamRequest, *, streamed: bool) -> UpstreamResponse:
    """POST the OpenAI-shaped body as it is and hand back the answer: whole, or (``streamed``)
    relayed as it arrives, where an SSE stream cut short is an error."""
    data = orjson.dumps(request.body)
    if streamed:
        chunks, media_type = await post_stream(
            session, url, data, headers, request.timeouts, parse_openai_error,
            openai_shaped=True, expect="text/event-stream" if request.stream else None)
        if request.stream and media_type.startswith("text/event-stream"):
            chunks = until_complete(chunks)
        return UpstreamResponse(200, stream=chunks, media_type=media_type)
    body, media_type = await post_json(session, url, data, headers, request.timeouts,
                                       parse_openai_error, openai_shaped=True)
    return UpstreamResponse(200, body=body, media_type=media_type)


def account_reference(body: Mapping[str, Any]) -> str | None:
    """Where a request names an object of the provider's account rather than sending its
    content: a content part's ``file_id`` (chat ``file`` parts; a Responses body's
    ``input_file`` / ``input_image``) or a ``file_search`` tool (its vector stores). The
    upstream reads those with the gateway's key, whoever put them there. None when nowhere."""
    for key in ("messages", "input"):
        items = body.get(key)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            content = item.get("content") if isinstance(item, dict) else None
            if not isinstance(content, list):
                continue
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    continue
                file = part.get("file")
                if part.get("file_id") is not None or (
                        isinstance(file, dict) and file.get("file_id") is not None):
                    return f"{key}[{i}].content[{j}]"
    tools = body.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        if isinstance(tool, dict) and tool.get("type") == "file_search":
            return f"tools[{i}]"
    return None


def refuse_account_objects(body: Mapping[str, Any], provider: str) -> None:
    """UpstreamError 400 when ``body`` names an object of the account (account_reference),
    naming ``provider`` and its setting."""
    where = account_reference(body)
    if where is not None:
        raise bad_request(f"{where}: provider '{provider}' takes no objects of its account "
                          "(file ids, vector stores): it would read them with the gateway's key, "
                          "whoever put them there (the operator can allow it: "
                          f"providers.{provider}.account_objects: true); send the content itself",
                          where.split("[", 1)[0])


class OpenAIProvider(Provider):
    # Passed through as they are: what a given model supports is up to the upstream.
    capabilities = frozenset({"chat", "completions", "stream", "tools", "vision", "json",
                              "reasoning", "embeddings", "images", "audio", "moderations"})

    @classmethod
    def default_base_url(cls, type_name: str) -> str | None:
        return PRESETS[type_name].base_url

    @classmethod
    def needs_key(cls, type_name: str) -> bool:
        return PRESETS[type_name].needs_key

    @classmethod
    def capabilities_of(cls, type_name: str) -> frozenset[str]:
        return cls.capabilities | {"rerank"} if type_name in RERANK_TYPES else cls.capabilities

    def __init__(self, spec: ProviderSpec, clients: ClientPool) -> None:
        super().__init__(spec, clients)
        self.capabilities = self.capabilities_of(spec.type)
        base = spec.base_url.rstrip("/")
        self._urls = {name: base + path for name, path in ENDPOINT_PATHS.items()}
        headers = {"Content-Type": "application/json", **spec.headers}
        if spec.api_key:
            headers["Authorization"] = f"Bearer {spec.api_key}"
        self._headers = headers
        self._key = self.pool_key()
        self.account_objects = spec.options.get("account_objects") is True

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        session = self.clients.session(self._key)
        native = request.native
        if native is not None and native.api == RESPONSES_API and request.endpoint == "chat" \
                and self.spec.type in RESPONSES_TYPES:
            if not self.account_objects:
                refuse_account_objects(native.body, self.name)
            return await self._send_responses(session, request, native)
        if not self.account_objects:
            refuse_account_objects(request.body, self.name)
        url = self._urls[request.endpoint]
        if request.endpoint == "transcriptions":
            return await self._send_form(session, url, request)
        # audio is streamed back as it comes
        return await pass_through(session, url, self._headers, request,
                                  streamed=request.stream or request.endpoint == "speech")

    async def _send_responses(self, session: aiohttp.ClientSession, request: UpstreamRequest,
                              native: NativeBody) -> UpstreamResponse:
        """A Responses request as the client sent it (model and override_params applied), and
        OpenAI's answer as it came: whole, or its event stream relayed."""
        url = self._urls["chat"].removesuffix("/chat/completions") + "/responses"
        data = orjson.dumps({**native.body, "stream": True} if request.stream else native.body)
        if request.stream:
            chunks, media_type = await post_stream(
                session, url, data, self._headers, request.timeouts, parse_openai_error,
                openai_shaped=True, expect="text/event-stream")
            return UpstreamResponse(
                200, stream=until_complete(chunks, _RESPONSES_END, "response.completed"),
                media_type=media_type, api=RESPONSES_API)
        body, media_type = await post_json(session, url, data, self._headers, request.timeouts,
                                           parse_openai_error, openai_shaped=True)
        return UpstreamResponse(200, body=body, media_type=media_type, api=RESPONSES_API)

    async def _send_form(self, session: aiohttp.ClientSession, url: str,
                         request: UpstreamRequest) -> UpstreamResponse:
        """A multipart upload: the form fields, and each file streamed from where the server
        spooled it (rewound, so a retry sends it whole again)."""
        form = aiohttp.FormData()
        for name, value in request.body.items():
            form.add_field(name, value if isinstance(value, str) else orjson.dumps(value).decode())
        for upload in request.files:
            form.add_field(upload.field, upload.rewind(), filename=upload.filename,
                           content_type=upload.content_type)
        headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        json_format = request.body.get("response_format", "json") in ("json", "verbose_json")
        body, media_type = await post_json(session, url, form, headers, request.timeouts,
                                           parse_openai_error, openai_shaped=True,
                                           expect_json=json_format)  # or text, srt, vtt
        return UpstreamResponse(200, body=body, media_type=media_type)

