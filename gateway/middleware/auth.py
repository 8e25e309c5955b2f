"""Virtual-key authentication: `Authorization: Bearer KEY` or `x-api-key: KEY`.

Keys are known only by their SHA-256; the lookup is by hash and the final comparison is
constant-time. 401 for no or unknown key, 403 for a route the key may not use.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Mapping

from .. import hookimpl
from ..errors import GatewayError
from ..graph.context import RequestContext
from ..graph.graph import KeySpec
from ..hookspecs import PluginContext


def presented_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key") or None


def find_key(keys_by_hash: Mapping[str, KeySpec], raw: str | None) -> KeySpec:
    """The key for a presented secret, or GatewayError 401."""
    if not raw:
        raise GatewayError(
            401,
            "missing API key: send `Authorization: Bearer <key>`",
            type="authentication_error",
            code="missing_api_key",
        )
    digest = hashlib.sha256(raw.encode()).hexdigest()
    spec = keys_by_hash.get(digest)
    if spec is None or not hmac.compare_digest(spec.sha256, digest):
        raise GatewayError(401, "invalid API key", type="authentication_error", code="invalid_api_key")
    if spec.expires_at is not None and time.time() >= spec.expires_at:
        raise GatewayError(401, f"API key '{spec.name}' has expired", type="authentication_error",
                           code="expired_api_key")
    return spec


class KeyAuth:
    """Request middleware: who is calling, and may they use this route?"""

    def __init__(self, keys_by_hash: Mapping[str, KeySpec]):
        self.keys_by_hash = keys_by_hash

    async def on_request(self, ctx: RequestContext) -> None:
        spec = find_key(self.keys_by_hash, presented_key(ctx.headers))
        if not spec.allows(ctx.route):
            raise GatewayError(
                403,
                f"key '{spec.name}' may not use route '{ctx.route}'",
                type="permission_error",
                code="route_not_allowed",
            )
        ctx.key_name = spec.name
        if spec.metadata:
            ctx.metadata = {**ctx.metadata, **spec.metadata}


@hookimpl
def request_middleware(config: dict, context: PluginContext) -> KeyAuth | None:
    """Built in: active whenever the config declares keys."""
    return KeyAuth(context.keys_by_hash) if context.keys_by_hash else None
