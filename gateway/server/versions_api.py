"""Admin endpoints for config versions (bearer ``server.admin_token`` like all of /admin/*):

- ``GET /admin/config/versions[?limit=N]``: the stored versions, newest first, the running one
  marked;
- ``GET /admin/config/versions/{n}``: one version with its text (and included files), literal
  secrets replaced by ``***`` (references such as ``${VAR}`` stay as written);
- ``POST /admin/rollback`` with ``{"version": N}`` or ``{"steps": N}`` (default: one step back):
  validates the stored text, writes it back to the config file atomically, reloads, and
  answers like ``POST /admin/reload`` plus ``restored_from``.

Versions are this config's (its ``server.name``, else its path): another config's version is
refused by name (404 to show, 409 to restore; ``"force": true`` restores it anyway).
"""

from __future__ import annotations

import asyncio
from typing import Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..config.redact import redact_text
from ..config.rollback import (
    OtherConfig,
    RollbackError,
    RollbackRefused,
    VersionNotFound,
    check_owner,
    pick_version,
    rollback,
)
from ..config.versions import StoreError, Version, VersionStore, config_identity
from ..errors import GatewayError
from .admin import actor_of
from .errors import gateway_error_response, json_response
from .reload import Reloader

Guard = Callable[[Request], "Response | None"]
MAX_LIMIT = 100_000  # versions listed at most at once
MAX_VERSION = 2**63 - 1  # SQLite's largest integer: no version number is beyond it



def _error(status: int, message: str, code: str) -> Response:
    return gateway_error_response(GatewayError(status, message, code=code,
                                               type="invalid_request_error" if status < 500
                                               else "server_error"), {})


class VersionEndpoints:
    def __init__(self, reloader: Reloader, guard: Guard):
        self.reloader = reloader
        self.guard = guard  # AdminEndpoints' bearer-token check
        self._rollback_lock = asyncio.Lock()

    def _store(self) -> VersionStore:
        """The store, scoped to the config this gateway serves."""
        settings = self.reloader.holder.current.settings
        return VersionStore(settings.data_dir,
                            config_identity(self.reloader.path, settings.name or None))

    def _running(self) -> int:
        return self.reloader.holder.current.version

    async def list(self, request: Request) -> Response:
        if (denied := self.guard(request)) is not None:
            return denied
        limit = request.query_params.get("limit", "")
        if limit and not (limit.isdigit() and 1 <= int(limit) <= MAX_LIMIT):
            return _error(400, f"limit must be an integer from 1 to {MAX_LIMIT}", "invalid_limit")
        try:
            versions = await asyncio.to_thread(self._store().list, int(limit) if limit else None)
        except StoreError as exc:
            return _error(500, str(exc), "version_store_unavailable")
        running = self._running()
        return json_response({
            "running": running,
            "config": self._store().config,
            "path": self.reloader.path,
            "environment": self.reloader.environment,
            "versions": [v.summary() | {"running": v.number == running} for v in versions],
        })

    async def show(self, request: Request) -> Response:
        if (denied := self.guard(request)) is not None:
            return denied
        number = request.path_params["number"]
        store = self._store()
        try:
            version = None if number > MAX_VERSION else await asyncio.to_thread(
                store.get, number)
        except StoreError as exc:
            return _error(500, str(exc), "version_store_unavailable")
        if version is None:
            return _error(404, f"there is no config version {number}; GET "
                               "/admin/config/versions lists them", "version_not_found")
        if version.config is not None:  # unknown-config versions may be looked at
            try:
                check_owner(store, version)
            except OtherConfig as exc:
                return _error(404, str(exc), "version_of_another_config")
        return json_response(shown(version, self._running()))

    async def rollback(self, request: Request) -> Response:
        if (denied := self.guard(request)) is not None:
            return denied
        try:
            number, steps, force = _rollback_request(await request.body())
        except ValueError as exc:
            return _error(400, str(exc), "invalid_rollback_request")
        store = self._store()
        async with self._rollback_lock:
            try:
                target = await asyncio.to_thread(pick_version, store, number, steps,
                                                 force=force)
                result = await asyncio.to_thread(
                    rollback, store, self.reloader.path, target,
                    environment=self.reloader.environment)
            except RollbackRefused as exc:
                return json_response({"result": "refused", "version": self._running(),
                              "restored_from": exc.number,
                              "errors": [str(e) for e in exc.errors],
                              "message": str(exc).splitlines()[0]}, 422)
            except VersionNotFound as exc:
                return _error(404, str(exc), "version_not_found")
            except OtherConfig as exc:
                return _error(409, str(exc).replace("--force", '"force": true'),
                              "version_of_another_config")
            except RollbackError as exc:
                return _error(500, str(exc), "rollback_failed")
            except StoreError as exc:
                return _error(500, str(exc), "version_store_unavailable")
            reload = await self.reloader.reload("rollback", actor=actor_of(request))
        body = {
            "result": reload.outcome,
            "version": reload.version,
            "restored_from": result.restored_from,
            "changed": result.changed,
            "errors": [str(e) for e in reload.errors],
        }
        return json_response(body, 422 if reload.outcome == "rejected" else 200)


def shown(version: Version, running: int | None) -> dict:
    """A version as the admin API shows it: texts with literal secrets masked."""
    return version.summary() | {
        "running": version.number == running,
        "text": redact_text(version.text),
        "files": {name: redact_text(text) for name, text in sorted(version.files.items())},
    }


def _rollback_request(raw: bytes) -> tuple[int | None, int | None, bool]:
    if not raw.strip():
        return None, None, False
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("the body must be JSON: {\"version\": N} or {\"steps\": N}") from None
    if not isinstance(body, dict) or set(body) - {"version", "steps", "force"}:
        raise ValueError("the body may hold only version or steps (and force): "
                         "{\"version\": N}")
    if not isinstance(body.get("force", False), bool):
        raise ValueError("force must be true or false")
    if "version" in body and "steps" in body:
        raise ValueError("give version or steps, not both")
    for name in ("version", "steps"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise ValueError(f"{name} must be a positive integer")
    return body.get("version"), body.get("steps"), body.get("force", False)
