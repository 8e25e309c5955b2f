"""Virtual-key authentication: `Authorization: Bearer KEY` or `x-api-key: KEY`.

Keys come from gateway.yaml (`keys:`, only their SHA-256) and from the key store (created with
`gateway keys create` or `POST /admin/keys`). Lookups are by hash, with a constant-time final
comparison. 401 for no, unknown, revoked or expired keys; 403 for a route the key may not use.
With no key configured anywhere, requests need none (the gateway then only listens on loopback).
Once the key store has issued a key, keys stay required, even after every key is revoked.
When the key store cannot be read (a damaged or unreadable keys.db), nobody the config does not
name is let in: 503 key_store_unavailable, whether a key was sent or not (fail closed).
"""

from __future__ import annotations

import sqlite3
import time
from hashlib import sha256
from hmac import compare_digest
from typing import Mapping

from ..errors import GatewayError
from ..graph.context import RequestContext
from ..graph.graph import KeySpec
from ..keys.store import KeyStore
from ..logs import get_logger

log = get_logger("gateway.auth")
STORE_FAILURE_LOG_EVERY = 10.0  # seconds: one log line, not one per refused request


def presented_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer":
            token = token.strip()
            if token:
                return token
    return headers.get("x-api-key") or None


def _unauthorized(message: str, code: str) -> GatewayError:
    return GatewayError(401, message, type="authentication_error", code=code)


class KeyAuth:
    """Who is calling (hookspecs.Authenticator), and may they use this route (request
    middleware)? Registered by the built-in plugin gateway/builtin/auth.py."""

    def __init__(self, keys_by_hash: Mapping[str, KeySpec], store: KeyStore | None):
        self.keys_by_hash = keys_by_hash
        self.store = store
        self._stored: dict[str, KeySpec] = {}  # converted StoredKeys, by hash

    def required(self) -> bool:
        if self.keys_by_hash:
            return True
        if self.store is None:
            return False
        try:
            return self.store.ever_issued()
        except sqlite3.Error as exc:  # cannot tell whether keys are needed: they are
            raise self._store_failed(exc) from None

    def identify(self, headers: Mapping[str, str]) -> KeySpec | None:
        """The caller's key; None when no key is configured at all; GatewayError 401 else."""
        if not self.keys_by_hash and not self.required():  # config keys: no need to ask
            return None
        raw = presented_key(headers)
        if not raw:
            raise _unauthorized("missing API key: send `Authorization: Bearer <key>`",
                                "missing_api_key")
        return self.by_hash(sha256(raw.encode()).hexdigest())

    def by_hash(self, digest: str) -> KeySpec:
        """The live key whose SHA-256 is ``digest`` (work done later for a caller, such as a
        batch's lines); GatewayError 401 when it is unknown, revoked or expired."""
        spec = self.keys_by_hash.get(digest) or self._from_store(digest)
        if spec is None or not compare_digest(spec.sha256, digest):
            raise _unauthorized("invalid API key", "invalid_api_key")
        if spec.expires_at is not None and time.time() >= spec.expires_at:
            raise _unauthorized(f"API key '{spec.name}' has expired", "expired_api_key")
        return spec

    def _from_store(self, digest: str) -> KeySpec | None:
        if self.store is None:
            return None
        try:
            stored = self.store.lookup(digest)  # None once revoked
        except sqlite3.Error as exc:
            raise self._store_failed(exc) from None
        if stored is None:
            return None
        spec = self._stored.get(digest)
        if spec is None:
            spec = self._stored[digest] = KeySpec.of_stored(stored)
        return spec

    _store_failure_logged = -STORE_FAILURE_LOG_EVERY

    def _store_failed(self, exc: sqlite3.Error) -> GatewayError:
        now = time.monotonic()
        if now - self._store_failure_logged >= STORE_FAILURE_LOG_EVERY:
            self._store_failure_logged = now
            log.error("key_store_unavailable", path=getattr(self.store, "path", None),
                      error=f"{type(exc).__name__}: {exc}")
        return GatewayError(503, "the gateway cannot check API keys now: its key store cannot "
                            "be read (its log says why)", type="server_error",
                            code="key_store_unavailable")

    async def on_request(self, ctx: RequestContext) -> None:
        # The server asked the config's authenticator before routing (this one, or a listed
        # plugin's that replaced it): ctx.key is its answer, None when no key is needed.
        spec = ctx.key
        if spec is None:
            return
        if spec.routes is not None and ctx.route not in spec.routes:  # spec.allows, inlined
            raise GatewayError(
                403,
                f"key '{spec.name}' may not use route '{ctx.route}'",
                type="permission_error",
                code="route_not_allowed",
            )
        ctx.key_name = spec.name
        if spec.metadata:
            ctx.metadata = {**ctx.metadata, **spec.metadata}

