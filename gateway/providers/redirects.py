"""Upstream redirects are never followed: aiohttp would re-send the provider's credentials
(``Authorization``, ``x-api-key``, ``api-key``, configured ``headers:``) to whatever host the
``Location`` names, and turn a POST into a GET. Every upstream call passes
``allow_redirects=False`` and reports a 3xx with this message."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit


def redirect_message(status: int, location: str, url: str) -> str:
    """What the user reads. Only the host is named: the Location's path, query or userinfo may
    carry a token."""
    host = urlsplit(urljoin(url, location)).netloc.rpartition("@")[2] if location else ""
    where = f" to {host}" if host else " (no Location)"
    return (f"upstream answered {status} redirect{where}; the gateway does not follow "
            "redirects — fix base_url")
