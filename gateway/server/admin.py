"""Admin API and operational endpoints: /healthz, /readyz, /admin/*.

/admin/* needs `Authorization: Bearer <server.admin_token>` when a token is set; without one
the gateway only listens on loopback (checked at start), so the admin API stays local.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response

from ..errors import GatewayError
from ..store.audit_db import admin_actor
from ..units import iso_utc
from .errors import gateway_error_response, json_response
from .drain import DRAIN
from .health import health_report
from .reload import GraphHolder, Reloader



class AdminEndpoints:
    def __init__(self, holder: GraphHolder, reloader: Reloader):
        self.holder = holder
        self.reloader = reloader

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if DRAIN.draining:  # SIGTERM: take the gateway out of rotation while it drains
            return json_response({"status": "not ready", "reason": "shutting down"}, 503)
        graph = self.holder.current
        if graph is None:
            return json_response({"status": "not ready", "reason": "no config loaded"}, 503)
        body = {"status": "ready", "config_version": graph.version}
        for check in graph.readiness_checks:  # contributed by plugins (hookspecs)
            result = await check.check()
            if result is None:
                continue
            body[check.name] = dict(result.detail)
            if not result.ready:
                body.update(status="not ready", reason=result.reason)
                return json_response(body, 503)
        return json_response(body)

    async def config(self, request: Request) -> Response:
        if (denied := self.deny(request)) is not None:
            return denied
        graph = self.holder.current
        rejection = self.reloader.last_rejection
        return json_response({
            "version": graph.version,
            "sha256": graph.sha256,
            "path": graph.path,
            "loaded_at": iso_utc(graph.loaded_at),
            "routes": sorted(graph.routes),
            "providers": sorted(graph.providers),
            "reloads": self.reloader.counts,
            "last_rejection": rejection.as_dict() if rejection else None,
        })

    async def health(self, request: Request) -> Response:
        if (denied := self.deny(request)) is not None:
            return denied
        return json_response(health_report(self.holder.current))

    async def reload(self, request: Request) -> Response:
        if (denied := self.deny(request)) is not None:
            return denied
        result = await self.reloader.reload("admin", force=request.query_params.get("force") == "1",
                                            actor=actor_of(request))
        body = {
            "result": result.outcome,
            "version": result.version,
            "errors": [str(e) for e in result.errors],
        }
        return json_response(body, 422 if result.outcome == "rejected" else 200)

    def deny(self, request: Request) -> Response | None:
        token = self.holder.current.settings.admin_token
        if not token:
            return None
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        err = GatewayError(401, "admin endpoints need `Authorization: Bearer <server.admin_token>`",
                           type="authentication_error", code="invalid_admin_token")
        return gateway_error_response(err, {})


def actor_of(request: Request) -> str:
    """The audit trail's name for an admin API caller (a hash prefix of its token)."""
    return admin_actor(request.headers.get("authorization", ""),
                       request.client.host if request.client else None)
