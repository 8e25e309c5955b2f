"""/admin/keys: list, create and revoke virtual keys. The raw key is returned once, at
creation; listings never show a key or its hash."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..config.key_request import FieldError, KeyRequestError, check_key_request
from ..keys.store import KeyError_, KeyStore, keystore_path
from ..logs import get_logger
from .admin import AdminEndpoints
from .errors import json_response

log = get_logger("gateway.keys")


class KeysEndpoints:
    def __init__(self, admin: AdminEndpoints):
        self.admin = admin

    def _store(self) -> KeyStore:
        graph = self.admin.holder.current
        path = keystore_path(graph.settings.data_dir)
        return self.admin.reloader.runtime.state.acquire(("keystore", path), lambda: KeyStore(path))

    async def list(self, request: Request) -> Response:
        if (denied := self.admin.deny(request)) is not None:
            return denied
        return json_response({"keys": [k.public() for k in self._store().list()]})

    async def create(self, request: Request) -> Response:
        """The body is a `keys:` entry of gateway.yaml without key_sha256, plus a name:
        {"name", "routes", "limits", "budget", "metadata", "expires"} (or the shorthands rpm,
        tpm, a numeric budget with period); checked with the same schema (docs/config.md)."""
        if (denied := self.admin.deny(request)) is not None:
            return denied
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _invalid(KeyRequestError([FieldError("body", f"not valid JSON: {exc}")]))
        store = self._store()
        try:
            wanted = check_key_request(body, self.admin.holder.current.routes)
            first = not store.ever_issued()
            raw, key = store.create(wanted.name, **wanted.store_fields())
        except KeyRequestError as exc:
            return _invalid(exc)
        except KeyError_ as exc:
            return _invalid(KeyRequestError([FieldError("name", str(exc))]))
        if first:
            log.warning("keys_now_required", key=key.name,
                        hint="the first key was created: every request now needs a key")
        return json_response({"key": raw, **key.public()}, 201)

    async def revoke(self, request: Request) -> Response:
        if (denied := self.admin.deny(request)) is not None:
            return denied
        try:
            key = self._store().revoke(request.path_params["name"])
        except KeyError_ as exc:
            return json_response({"error": {"message": str(exc), "type": "invalid_request_error",
                                    "code": "key_not_found", "param": "name"}}, 404)
        return json_response(key.public())


def _invalid(exc: KeyRequestError) -> Response:
    """400 in OpenAI's shape; every field error listed beside it."""
    error = {"message": f"invalid key request: {exc}", "type": "invalid_request_error",
             "code": "invalid_key_request", "param": exc.errors[0].field if exc.errors else None}
    return json_response({"error": error, "errors": [e.as_dict() for e in exc.errors]}, 400)
