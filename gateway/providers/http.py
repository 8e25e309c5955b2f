"""HTTP calls every adapter makes the same way: timeouts, first-byte semantics for streams,
and turning upstream failures into UpstreamError values.

- ``post_json`` returns the whole answer within ``timeouts.total``.
- ``post_stream`` returns once the first bytes have arrived (within ``first_byte``): until then a
  failure is an ordinary failed attempt that retry and fallback can act on. After that, the
  iterator enforces ``idle`` between chunks.
- Error bodies are parsed by a provider-specific function into (message, code), and the
  UpstreamError carries an OpenAI-shaped body unless the upstream's body already is one.
- Redirects are never followed: a 3xx would carry the provider's credentials to whatever host
  the Location names (and turn a POST into a GET). It is an upstream error that names the host.
- A 2xx whose body is not what the caller expects (HTML where JSON or SSE was asked for, as a
  captive portal or a wrong base_url gives) is an upstream error too, never a success.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime
from typing import Any, AsyncIterator, Callable, Mapping

import aiohttp
import orjson
from aiohttp.typedefs import StrOrURL

from ..errors import UpstreamError, classify_status, openai_error_body
from ..units import duration_text, size_text
from .base import Timeouts
from .hops import with_hop
from .redirects import redirect_message

MAX_ERROR_BODY = 64 * 1024
# The most of a whole (not streamed) answer the gateway holds, decompressed: past it the attempt
# fails as an upstream server error. Far above any real answer (a 2,048-input batch of 3,072-
# dimension embeddings is ~80 MB of JSON); it is there so that an upstream answering without
# end, or a small gzip body that inflates to gigabytes, cannot exhaust the gateway's memory.
MAX_ANSWER = 256 * 1024 * 1024

# (body, status) -> (message, code): how one provider words its errors.
ErrorParser = Callable[[bytes, int], tuple[str, str | None]]
RetryAfter = Callable[[Mapping[str, str]], float | None]


async def post_json(
    session: aiohttp.ClientSession, url: StrOrURL, data: Any, headers: Mapping[str, str],
    timeouts: Timeouts, parse_error: ErrorParser, *, openai_shaped: bool = False,
    retry_after_of: RetryAfter | None = None, expect_json: bool = True,
) -> tuple[bytes, str]:
    """POST and read the whole answer: (body, content type). With ``expect_json``, an answer
    that is not JSON is an upstream error."""
    timeout = aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect)
    try:
        async with session.post(url, data=data, headers=with_hop(headers), timeout=timeout,
                                allow_redirects=False) as resp:
            if resp.status >= 300:
                raise await error_from_response(resp, parse_error, openai_shaped, retry_after_of)
            body = await read_answer(resp)
            media_type = resp.headers.get("Content-Type", "application/json")
            if expect_json and not _is_json(body, media_type):
                raise unexpected_body(resp.status, media_type, "JSON")
            return body, media_type
    except asyncio.TimeoutError:
        raise timeout_error(timeouts.total) from None
    except aiohttp.ClientError as exc:
        raise connection_error(exc) from None


async def read_answer(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body of an answer, at most MAX_ANSWER bytes once decompressed. A plain body
    whose length is declared within the cap is read in one call (the common case costs
    nothing more); an undeclared or compressed one is read piece by piece and given up on past
    the cap (UpstreamError 502, class server: retried and fallen back like any)."""
    limit = MAX_ANSWER
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit)
    if declared is not None and not resp.headers.get("Content-Encoding"):
        return await resp.read()
    pieces, size = [], 0
    async for piece in resp.content.iter_chunked(1024 * 1024):
        size += len(piece)
        if size > limit:
            resp.close()  # stop reading: the connection is not reused
            raise _too_large(limit)
        pieces.append(piece)
    return b"".join(pieces)


def _too_large(limit: int) -> UpstreamError:
    message = f"upstream answer larger than {size_text(limit)}: not read further"
    return UpstreamError(502, "server", message,
                         body=openai_error_body(message, "api_error", "upstream_answer_too_large"),
                         headers={"Content-Type": "application/json"})


async def post_stream(
    session: aiohttp.ClientSession, url: StrOrURL, data: bytes, headers: Mapping[str, str],
    timeouts: Timeouts, parse_error: ErrorParser, *, openai_shaped: bool = False,
    retry_after_of: RetryAfter | None = None, expect: str | None = None,
) -> tuple[AsyncIterator[bytes], str]:
    """POST and wait for the first bytes: (an iterator over the raw body, content type).
    ``expect`` is the media type the stream must have (``text/event-stream``), if any."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect)
    resp = None
    wait = min(timeouts.first_byte, timeouts.total)
    try:
        async with asyncio.timeout(wait):
            resp = await session.post(url, data=data, headers=with_hop(headers),
                                      timeout=timeout, allow_redirects=False)
            if resp.status >= 300:
                raise await error_from_response(resp, parse_error, openai_shaped, retry_after_of)
            declared = resp.headers.get("Content-Type")
            if expect and declared and not declared.lower().startswith(expect):
                raise unexpected_body(resp.status, declared, expect)
            first = await resp.content.readany()
    except asyncio.TimeoutError:
        if resp is not None:
            resp.release()
        raise timeout_error(wait, "for the first byte") from None
    except aiohttp.ClientError as exc:
        if resp is not None:
            resp.release()
        raise connection_error(exc) from None
    except BaseException:
        if resp is not None:
            resp.release()
        raise
    media_type = resp.headers.get("Content-Type", "text/event-stream")
    return _relay(resp, first, timeouts.idle), media_type


async def _relay(resp: aiohttp.ClientResponse, first: bytes, idle: float) -> AsyncIterator[bytes]:
    """Yield upstream bytes as they arrive; a gap longer than ``idle`` is a timeout. Failures
    are worded for the client and the log, not in aiohttp's terms (its TransferEncodingError
    "400" reads like an upstream 400)."""
    received = len(first)
    try:
        if first:
            yield first
        read = resp.content.readany
        while True:
            try:
                async with asyncio.timeout(idle):
                    chunk = await read()
            except asyncio.TimeoutError:
                raise UpstreamError(408, "timeout", f"no data from upstream for {idle:g}s "
                                    "(timeouts.idle)", from_upstream=False) from None
            except aiohttp.ClientError:
                raise UpstreamError(502, "connection", "upstream connection closed mid-stream "
                                    f"after {received} bytes", from_upstream=False) from None
            if not chunk:
                return
            received += len(chunk)
            yield chunk
    finally:
        resp.release()


async def error_from_response(
    resp: aiohttp.ClientResponse, parse_error: ErrorParser, openai_shaped: bool = False,
    retry_after_of: RetryAfter | None = None,
) -> UpstreamError:
    """A non-2xx answer as an UpstreamError; the provider's message is kept."""
    if resp.status < 400:
        return redirect_error(resp.status, resp.headers.get("Location", ""), str(resp.url))
    raw = await resp.content.read(MAX_ERROR_BODY)
    message, code = parse_error(raw, resp.status)
    error_class = classify_status(resp.status, code)
    body = raw if openai_shaped and _is_openai_error(raw) else openai_error_body(
        message, error_type(resp.status), code)
    return UpstreamError(
        resp.status,
        error_class,
        message,
        retry_after=(retry_after_of or retry_after)(resp.headers),
        body=body,
        headers={"Content-Type": "application/json"},
    )


def redirect_error(status: int, location: str, url: str) -> UpstreamError:
    """A 3xx, never followed: a server-class failure (retried, falls back, counts against the
    breaker) whose message names the host it pointed at."""
    message = redirect_message(status, location, url)
    return UpstreamError(502, "server", message,
                         body=openai_error_body(message, "api_error", "upstream_redirect"),
                         headers={"Content-Type": "application/json"})


def unexpected_body(status: int, media_type: str, expected: str) -> UpstreamError:
    """A 2xx with a body of the wrong kind (an HTML page where JSON was expected): a
    server-class failure, so it is retried, falls back and counts against the breaker."""
    kind = media_type.split(";")[0].strip() or "no content type"
    message = (f"upstream answered {status} with {kind} where {expected} was expected — "
               "is base_url right?")
    return UpstreamError(502, "server", message,
                         body=openai_error_body(message, "api_error", "bad_upstream_response"),
                         headers={"Content-Type": "application/json"})


def _is_json(body: bytes, media_type: str) -> bool:
    """Cheap when the upstream says JSON (the first byte is checked); parsed otherwise."""
    if "json" in media_type.lower():
        return body.lstrip()[:1] in (b"{", b"[")
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


def parse_openai_error(body: bytes, status: int) -> tuple[str, str | None]:
    """OpenAI's {"error": {"message", "code", "type"}}, or plain text."""
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
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"], None
    return f"upstream answered {status}", None


def _is_openai_error(body: bytes) -> bool:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), dict)


def error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "api_error"
    return "invalid_request_error"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After") or headers.get("retry-after")
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


def timeout_error(seconds: float, what: str = "") -> UpstreamError:
    detail = f" {what}" if what else ""
    return UpstreamError(408, "timeout", f"no answer within {duration_text(seconds)}{detail}",
                         from_upstream=False)


def connection_error(exc: Exception) -> UpstreamError:
    return UpstreamError(502, "connection", f"connection failed: {exc.__class__.__name__}: {exc}",
                         from_upstream=False)
