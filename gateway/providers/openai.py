"""OpenAI and every provider that speaks its HTTP API (presets differ in base_url and auth).

Bodies pass through untouched apart from the model name, and streams are forwarded chunk by
chunk as they arrive: no parsing on the way back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import AsyncIterator

import aiohttp
import orjson

from ..errors import UpstreamError, classify_status
from .base import ENDPOINT_PATHS, Provider, UpstreamRequest, UpstreamResponse


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

MAX_ERROR_BODY = 64 * 1024


class OpenAIProvider(Provider):
    @classmethod
    def default_base_url(cls, type_name: str) -> str | None:
        return PRESETS[type_name].base_url

    @classmethod
    def needs_key(cls, type_name: str) -> bool:
        return PRESETS[type_name].needs_key

    def __init__(self, spec, clients):
        super().__init__(spec, clients)
        base = spec.base_url.rstrip("/")
        self._urls = {name: base + path for name, path in ENDPOINT_PATHS.items()}
        headers = {"Content-Type": "application/json", **spec.headers}
        if spec.api_key:
            headers["Authorization"] = f"Bearer {spec.api_key}"
        self._headers = headers
        self._key = self.pool_key()

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        t = request.timeouts
        session = self.clients.session(self._key)
        data = orjson.dumps(request.body)
        url = self._urls[request.endpoint]
        try:
            if request.stream:
                return await self._send_stream(session, url, data, t)
            timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect)
            async with session.post(url, data=data, headers=self._headers, timeout=timeout) as resp:
                if resp.status >= 400:
                    raise await error_from_response(resp)
                body = await resp.read()
                return UpstreamResponse(resp.status, body=body, media_type=_media_type(resp))
        except asyncio.TimeoutError:
            raise _timeout_error(t.total) from None
        except aiohttp.ClientError as exc:
            raise connection_error(exc) from None

    async def _send_stream(self, session, url, data, t) -> UpstreamResponse:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.connect)
        resp = None
        try:
            # The first byte must arrive within first_byte (and the attempt's total); until it
            # has, a failure is an ordinary failed attempt that retry and fallback can act on.
            async with asyncio.timeout(min(t.first_byte, t.total)):
                resp = await session.post(url, data=data, headers=self._headers, timeout=timeout)
                if resp.status >= 400:
                    raise await error_from_response(resp)
                first = await resp.content.readany()
        except BaseException:
            if resp is not None:
                resp.release()
            raise
        return UpstreamResponse(
            resp.status,
            stream=_relay(resp, first, t.idle),
            media_type=_media_type(resp, "text/event-stream"),
        )


async def _relay(resp: aiohttp.ClientResponse, first: bytes, idle: float) -> AsyncIterator[bytes]:
    """Yield upstream bytes as they arrive; a gap longer than ``idle`` is a timeout."""
    try:
        if first:
            yield first
        read = resp.content.readany
        while True:
            try:
                async with asyncio.timeout(idle):
                    chunk = await read()
            except asyncio.TimeoutError:
                raise _timeout_error(idle, "between stream chunks") from None
            except aiohttp.ClientError as exc:
                raise connection_error(exc) from None
            if not chunk:
                return
            yield chunk
    finally:
        resp.release()


def _media_type(resp: aiohttp.ClientResponse, default: str = "application/json") -> str:
    return resp.headers.get("Content-Type", default)


async def error_from_response(resp: aiohttp.ClientResponse) -> UpstreamError:
    """Turn a non-2xx upstream answer into an UpstreamError, keeping the provider's message."""
    body = await resp.content.read(MAX_ERROR_BODY)
    message, code = _error_message(body, resp.status)
    return UpstreamError(
        resp.status,
        classify_status(resp.status, code),
        message,
        retry_after=retry_after(resp.headers),
        body=body,
        headers={"Content-Type": resp.headers.get("Content-Type", "application/json")},
    )


def _error_message(body: bytes, status: int) -> tuple[str, str | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or f"upstream answered {status}"), None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        code = err.get("code") or err.get("type")
        return str(err.get("message") or f"upstream answered {status}"), code
    if isinstance(err, str):
        return err, None
    return f"upstream answered {status}", None


def retry_after(headers) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _timeout_error(seconds: float, what: str = "") -> UpstreamError:
    detail = f" {what}" if what else ""
    return UpstreamError(
        408, "timeout", f"no answer within {seconds:g}s{detail}", from_upstream=False
    )


def connection_error(exc: Exception) -> UpstreamError:
    return UpstreamError(
        502, "connection", f"connection failed: {exc.__class__.__name__}: {exc}", from_upstream=False
    )
