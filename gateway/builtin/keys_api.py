"""/admin/keys: list, create and revoke virtual keys. The raw key is returned once, at
creation; listings never show a key or its hash."""

from __future__ import annotations

import asyncio
from typing import Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config.key_request import FieldError, KeyRequestError, check_key_request
from ..keys.store import KeyError_, KeyStore
from ..logs import get_logger
from ..store.audit_db import admin_actor, record
from ._json import json_response

log = get_logger("gateway.keys")


class KeysEndpoints:
    """The server mounts these under /admin, behind the admin token."""

    def __init__(self, store: KeyStore, routes: Mapping[str, object], data_dir: str):
        self.store = store
        self.config_routes = routes  # the routes a new key may be given
        self.data_dir = data_dir  # where the audit trail is

    def routes(self) -> list[Route]:
        return [Route("/keys", self.list, methods=["GET"]),
                Route("/keys", self.create, methods=["POST"]),
                Route("/keys/{name}", self.revoke, methods=["DELETE"])]

    async def list(self, request: Request) -> Response:
        return json_response({"keys": [k.public() for k in self.store.list()]})

    async def create(self, request: Request) -> Response:
        """The body is a `keys:` entry of gateway.yaml without key_sha256, plus a name:
        {"name", "routes", "limits", "budget", "metadata", "expires"} (or the shorthands rpm,
        tpm, a numeric budget with period); checked with the same schema (docs/config.md)."""
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _invalid(KeyRequestError([FieldError("body", f"not valid JSON: {exc}")]))
        store = self.store
        try:
            wanted = check_key_request(body, self.config_routes)
            first = not store.ever_issued()
            raw, key = store.create(wanted.name, **wanted.store_fields())
        except KeyRequestError as exc:
            return _invalid(exc)
        except KeyError_ as exc:
            return _invalid(KeyRequestError([FieldError("name", str(exc))]))
        if first:
            log.warning("keys_now_required", key=key.name,
                        hint="the first key was created: every request now needs a key")
        await self._audit(request, "key.create", key.public())
        return json_response({"key": raw, **key.public()}, 201)

    async def revoke(self, request: Request) -> Response:
        try:
            key = self.store.revoke(request.path_params["name"])
        except KeyError_ as exc:
            return json_response({"error": {"message": str(exc), "type": "invalid_request_error",
                                    "code": "key_not_found", "param": "name"}}, 404)
        await self._audit(request, "key.revoke", key.public())
        return json_response(key.public())

    async def _audit(self, request: Request, action: str, key: dict) -> None:
        actor = admin_actor(request.headers.get("authorization", ""),
                            request.client.host if request.client else None)
        await asyncio.to_thread(record, self.data_dir, actor, action, key["name"], key)


def _invalid(exc: KeyRequestError) -> Response:
    """400 in OpenAI's shape; every field error listed beside it."""
    error = {"message": f"invalid key request: {exc}", "type": "invalid_request_error",
             "code": "invalid_key_request", "param": exc.errors[0].field if exc.errors else None}
    return json_response({"error": error, "errors": [e.as_dict() for e in exc.errors]}, 400)
