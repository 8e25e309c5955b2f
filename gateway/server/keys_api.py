"""/admin/keys: list, create and revoke virtual keys. The raw key is returned once, at
creation; listings never show a key or its hash."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..keys.options import key_fields, parse_expiry
from ..keys.store import KeyError_, KeyStore, keystore_path
from .admin import AdminEndpoints
from .errors import json_response


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
        if (denied := self.admin.deny(request)) is not None:
            return denied
        try:
            body = orjson.loads(await request.body())
            if not isinstance(body, dict) or not isinstance(body.get("name"), str):
                raise ValueError("send a JSON object with at least a \"name\"")
            routes = body.get("routes")
            fields = key_fields(",".join(routes) if isinstance(routes, list) else routes,
                                body.get("rpm"), body.get("tpm"), body.get("budget"),
                                body.get("period", "monthly"),
                                [f"{k}={v}" for k, v in (body.get("metadata") or {}).items()])
            raw, key = self._store().create(body["name"], expires_at=parse_expiry(body.get("expires")),
                                            **fields)
        except (ValueError, orjson.JSONDecodeError, KeyError_) as exc:
            return json_response({"error": {"message": str(exc), "type": "invalid_request_error",
                                    "code": "invalid_key_request", "param": None}}, 400)
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
