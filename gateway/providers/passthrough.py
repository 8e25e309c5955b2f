"""A provider's own endpoints, called as they are (POST /v1/passthrough/{provider}/{path}):
the URL built only below the provider's configured base_url, the client's headers cleaned, the
provider's credentials added, and the answer streamed back.

Pure checks first (``upstream_url``, ``forwarded_headers``: PassthroughRefused says why a
request is refused), then one HTTP call (``send``).
"""

from __future__ import annotations

import asyncio
import re
from typing import Mapping
from urllib.parse import unquote

import aiohttp
import yarl

from ..errors import UpstreamError
from .base import Provider, Timeouts, UpstreamResponse
from .hops import with_hop
from .http import MAX_ERROR_BODY, _relay, connection_error, redirect_error, timeout_error

# RFC 3986 path characters (unreserved, sub-delims, ':' and '@') and percent escapes.
_SEGMENT = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+")
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade"})
# The client's credentials (for the gateway) and cookies: never sent on.
CLIENT_AUTH = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key",
                         "x-goog-api-key", "cookie"})
# Headers that ask a proxy to use another host or path than the URL's: refused with 400.
HOST_OVERRIDES = frozenset({"x-forwarded-host", "x-host", "x-original-host", "x-original-url",
                            "x-rewrite-url"})
# Set by the gateway or the HTTP client, never taken from the client.
OWN = frozenset({"host", "content-length", "forwarded", "x-request-id", "accept-encoding"})
# Of the answer's headers, those that describe the upstream connection, not the answer.
ANSWER_DROPPED = HOP_BY_HOP | {"content-length", "content-encoding", "set-cookie", "server",
                               "date", "content-type"}


class PassthroughRefused(ValueError):
    """A passthrough request that could reach somewhere else than the provider: a 400."""


def upstream_url(base_url: str, raw_path: str, query: str = "") -> str:
    """``base_url`` + ``/raw_path`` (+ ``?query``), refused when the path could leave what is
    below base_url: empty segments (``//``, an absolute URL), ``.`` or ``..`` (plain or
    percent-encoded), encoded slashes or backslashes, double encoding, characters outside
    RFC 3986 paths."""
    base = yarl.URL(base_url)
    if base.scheme not in ("http", "https") or not base.host:
        raise PassthroughRefused("this provider has no HTTP base_url to pass requests to")
    if not raw_path:
        raise PassthroughRefused("name the provider's path: /v1/passthrough/{provider}/{path}")
    for segment in raw_path.split("/"):
        if not segment:
            raise PassthroughRefused("the path has an empty segment ('//')")
        if not _SEGMENT.fullmatch(segment):
            raise PassthroughRefused(f"the path segment '{segment}' has characters a path "
                                     "may not have")
        decoded = unquote(segment)
        if decoded in (".", "..") or any(c in decoded for c in "/\\%"):
            raise PassthroughRefused(f"the path segment '{segment}' is not allowed "
                                     "('.', '..', encoded slashes, backslashes or percent signs)")
    prefix = base.raw_path.rstrip("/")
    url = yarl.URL(f"{str(base).rstrip('/')}/{raw_path}" + (f"?{query}" if query else ""),
                   encoded=True)
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port) \
            or not url.raw_path.startswith(prefix + "/"):
        raise PassthroughRefused("the path leads outside the provider's base_url")
    return str(url)


def forwarded_headers(client: Mapping[str, str]) -> dict[str, str]:
    """The client's headers as sent on: without hop-by-hop headers (and those its Connection
    header names), its credentials, Host, Content-Length, x-forwarded-* and x-gateway-*;
    PassthroughRefused for a header that asks for another host or path."""
    named = {h.strip().lower() for h in client.get("connection", "").split(",") if h.strip()}
    out = {}
    for name, value in client.items():
        lower = name.lower()
        if lower in HOST_OVERRIDES:
            raise PassthroughRefused(f"the {lower} header is refused on passthrough requests")
        if lower in HOP_BY_HOP or lower in named or lower in CLIENT_AUTH or lower in OWN \
                or lower.startswith(("x-forwarded-", "x-gateway-")):
            continue
        out[lower] = value
    return out


def answer_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in ANSWER_DROPPED}


async def send(provider: Provider, method: str, url: str, data: bytes,
               headers: Mapping[str, str], credentials: Mapping[str, str],
               timeouts: Timeouts) -> UpstreamResponse:
    """One call; the answer streamed back whatever its status (the provider's own words),
    except redirects, never followed (a 502 naming where it pointed). An error answer is read
    whole (at most 64 KB) so that credentials can be scrubbed from it."""
    session = provider.clients.session(provider.pool_key())
    sent = with_hop({**headers, **credentials})
    resp = None
    try:
        async with asyncio.timeout(min(timeouts.first_byte, timeouts.total)):
            resp = await session.request(method, yarl.URL(url, encoded=True), data=data or None,
                                         headers=sent, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(
                                             total=None, sock_connect=timeouts.connect))
            if 300 <= resp.status < 400:
                raise redirect_error(resp.status, resp.headers.get("Location", ""), url)
            media_type = resp.headers.get("Content-Type", "application/octet-stream")
            kept = answer_headers(resp.headers)
            if resp.status >= 400:
                body = await resp.content.read(MAX_ERROR_BODY)
                resp.release()
                return UpstreamResponse(resp.status, body=body, media_type=media_type,
                                        headers=kept)
            first = await resp.content.readany()
    except asyncio.TimeoutError:
        if resp is not None:
            resp.release()
        raise timeout_error(timeouts.first_byte, "for the first byte") from None
    except aiohttp.ClientError as exc:
        if resp is not None:
            resp.release()
        raise connection_error(exc) from None
    except UpstreamError:
        if resp is not None:
            resp.release()
        raise
    return UpstreamResponse(resp.status, stream=_relay(resp, first, timeouts.idle),
                            media_type=media_type, headers=kept)
