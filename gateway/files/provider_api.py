"""Calls to a provider's own API (its /files, /fine_tuning/jobs, /batches) with the provider's
credentials, for the features that pass work through to it: JSON answers, or GatewayError with
the provider's status and message, its credentials scrubbed."""

from __future__ import annotations

import asyncio
import re
from typing import Any, AsyncIterator, Mapping
from urllib.parse import urlsplit

import aiohttp
import orjson
import yarl

from ..errors import GatewayError, UpstreamError
from ..providers.base import Provider
from ..providers.http import read_answer

MAX_ERROR = 64 * 1024
# A segment of a path the gateway asks a provider for: its own words and the ids the provider
# gave (batch_…, file-…, ftjob-…). Nothing that moves elsewhere: no "..", "/", "?", "#", "%".
SEGMENT = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9_.:~-]{1,256}")
TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=10)


class ForeignHost(GatewayError):
    """A URL a provider gave that is not on its configured host: its credentials are not
    sent there."""


async def call(provider: Provider, method: str, path: str, *,
               headers: Mapping[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """One call to the provider's own API with its credentials (and ``headers``); its JSON
    answer, or GatewayError (the provider's status and message, its credentials scrubbed)."""
    return await call_url(provider, method, _url(provider, path),
                          {**(provider.passthrough_headers() or {}), **(headers or {})},
                          **kwargs)


async def call_url(provider: Provider, method: str, url: str | yarl.URL,
                   headers: Mapping[str, str], *, answer_json: bool = True,
                   **kwargs: Any) -> dict[str, Any]:
    """One call to ``url`` (of the provider's, its credentials in ``headers``): its JSON
    answer ({} for any answer when not ``answer_json``), or GatewayError as ``call``."""
    session = provider.clients.session(provider.pool_key())
    name = provider.name
    path = yarl.URL(url).path
    try:
        async with session.request(method, url, headers=dict(headers), timeout=TIMEOUT,
                                    allow_redirects=False, **kwargs) as resp:
            raw = (await resp.content.read(MAX_ERROR) if resp.status >= 300
                   else await read_answer(resp))
            status = resp.status
    except UpstreamError as err:  # an answer past http.MAX_ANSWER
        raise GatewayError(502, f"provider '{name}': {err.message}", type="server_error",
                           code="upstream_error") from None
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise GatewayError(502, f"provider '{name}' could not be reached: "
                           f"{type(exc).__name__}", type="server_error",
                           code="upstream_unreachable") from None
    if status >= 300:
        message = _scrub(provider, _error_message(raw) or f"status {status}")
        raise GatewayError(status if status >= 400 else 502,
                           f"provider '{name}' answered {status}: {message}",
                           type="invalid_request_error" if 400 <= status < 500 else "server_error",
                           code="upstream_error")
    if not answer_json:
        return {}
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise GatewayError(502, f"provider '{name}' answered {method} {path} with no JSON object",
                           type="server_error", code="bad_upstream")
    return answer


def _url(provider: Provider, path: str) -> str:
    """The provider's URL of ``path`` (its segments partly ids from the provider's answers):
    GatewayError 502 when a segment could name another resource than the one meant (``..``,
    a query, an encoded slash), so the provider's key goes to no other path."""
    if not path.startswith("/") or not all(SEGMENT.fullmatch(s) for s in path[1:].split("/")):
        raise GatewayError(502, f"provider '{provider.name}' named a resource the gateway will "
                           f"not ask for: {path[:200]!r}", type="server_error",
                           code="bad_upstream")
    return provider.spec.base_url.rstrip("/") + path


def _error_message(raw: bytes) -> str:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")[:500]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return raw.decode(errors="replace")[:500]


def _scrub(provider: Provider, text: str) -> str:
    for secret in (provider.spec.api_key, *provider.spec.headers.values()):
        if secret and len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
    return text


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def on_provider_host(provider: Provider, url: str) -> bool:
    """Whether ``url`` has the scheme, host and port of the provider's ``base_url``."""
    return _origin(url) == _origin(provider.spec.base_url) and bool(_origin(url)[1])


async def stream(provider: Provider, path: str) -> AsyncIterator[bytes]:
    """The body of a GET to the provider's API, as it arrives (a file's content)."""
    async for chunk in stream_url(provider, _url(provider, path)):
        yield chunk


async def stream_url(provider: Provider, url: str) -> AsyncIterator[bytes]:
    """The body of a GET of ``url`` with the provider's credentials, as it arrives; a URL
    not on the provider's configured host raises ForeignHost before anything is sent."""
    if not on_provider_host(provider, url):
        raise ForeignHost(502, f"provider '{provider.name}' pointed the gateway to "
                          f"{_origin(url)[1] or 'a URL without a host'}, which is not the host "
                          f"of its base_url: its credentials are not sent there",
                          type="server_error", code="foreign_host")
    async for chunk in get_stream(provider, url, provider.passthrough_headers() or {}):
        yield chunk


async def get_stream(provider: Provider, url: str | yarl.URL,
                     headers: Mapping[str, str]) -> AsyncIterator[bytes]:
    """The body of a GET of ``url`` (of the provider's, its credentials in ``headers``)."""
    path = yarl.URL(url).path
    session = provider.clients.session(provider.pool_key())
    try:
        async with session.get(url, headers=dict(headers), timeout=TIMEOUT,
                               allow_redirects=False) as resp:
            if resp.status >= 300:
                raw = await resp.content.read(MAX_ERROR)
                message = _scrub(provider, _error_message(raw) or f"status {resp.status}")
                raise GatewayError(502, f"provider '{provider.name}' answered {resp.status} "
                                   f"for {path}: {message}", type="server_error",
                                   code="upstream_error")
            async for chunk in resp.content.iter_chunked(64 * 1024):
                yield chunk
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise GatewayError(502, f"provider '{provider.name}' could not be reached: "
                           f"{type(exc).__name__}", type="server_error",
                           code="upstream_unreachable") from None


async def delete(provider: Provider, path: str) -> None:
    """DELETE something at the provider (a file); one already gone (404) counts as deleted.
    GatewayError otherwise (the provider's status, or 502 when it cannot be reached)."""
    try:
        await call(provider, "DELETE", path)
    except GatewayError as err:
        if err.status != 404:
            raise


async def upload(provider: Provider, purpose: str, filename: str,
                 content: AsyncIterator[bytes]) -> str:
    """Upload ``content`` (streamed) as a file to the provider's ``/files``; its id there."""
    form = aiohttp.FormData()
    form.add_field("purpose", purpose)
    form.add_field("file", content, filename=filename, content_type="application/jsonl")
    answer = await call(provider, "POST", "/files", data=form)
    file_id = answer.get("id")
    if not isinstance(file_id, str):
        raise GatewayError(502, f"provider '{provider.name}' answered an upload without an id",
                           type="server_error", code="bad_upstream")
    return file_id
