"""create_app(): the Starlette application around one Reloader (which holds the graph)."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from ..errors import openai_error_body
from ..logs import get_logger
from .access_log import log_request
from .admin import AdminEndpoints
from .alerts import AlertDispatcher
from .background import BackgroundTasks
from .disconnect import DisconnectWatch
from .drain import DRAIN
from .engines.uvicorn_protocol import BODY_TIMED_OUT
from .guard import RequestGuard
from .health_checks import HealthMonitor
from .metrics import metrics_endpoint
from .openai_api import OpenAIEndpoints
from .plugin_routes import PluginAdminRoutes, PluginApiRoutes
from .reload import Reloader, watch
from .versions_api import VersionEndpoints

log = get_logger("gateway.server")


def create_app(reloader: Reloader, *, watch_config: bool = True) -> RequestGuard:
    holder = reloader.holder
    api = OpenAIEndpoints(holder)
    admin = AdminEndpoints(holder, reloader)
    versions = VersionEndpoints(reloader, admin.deny)
    alerts = AlertDispatcher(holder)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(reloader, stop)) if watch_config else None
        monitor = HealthMonitor(reloader.runtime.state)
        monitor.reconcile(holder.current)
        reloader.listeners.append(monitor.reconcile)
        alerts.start()  # events -> observability.alerts webhooks
        background = BackgroundTasks(api_routes.dispatcher)  # plugins' jobs (batch runner)
        background.reconcile(holder.current)
        reloader.listeners.append(background.reconcile)
        try:
            yield
        finally:
            stop.set()
            reloader.listeners.remove(background.reconcile)
            await background.stop()
            await alerts.stop()
            await monitor.stop()
            if watcher is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(watcher, timeout=2)
            await reloader.runtime.clients.close()
            await reloader.runtime.state.aclose()

    routes = [
        Route("/v1/chat/completions", api.chat_completions, methods=["POST"]),
        Route("/v1/completions", api.completions, methods=["POST"]),
        Route("/v1/embeddings", api.embeddings, methods=["POST"]),
        Route("/v1/images/generations", api.images, methods=["POST"]),
        Route("/v1/audio/speech", api.speech, methods=["POST"]),
        Route("/v1/audio/transcriptions", api.transcriptions, methods=["POST"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/models/{model:path}", api.model, methods=["GET"]),
        Route("/healthz", admin.healthz, methods=["GET"]),
        Route("/readyz", admin.readyz, methods=["GET"]),
        Route("/admin/config", admin.config, methods=["GET"]),
        Route("/admin/reload", admin.reload, methods=["POST"]),
        Route("/admin/config/versions", versions.list, methods=["GET"]),
        Route("/admin/config/versions/{number:int}", versions.show, methods=["GET"]),
        Route("/admin/rollback", versions.rollback, methods=["POST"]),
        Route("/admin/health", admin.health, methods=["GET"]),
        Route("/metrics", _admin_only(admin.deny, metrics_endpoint(reloader, alerts)), methods=["GET"]),
        Mount("/admin", app=PluginAdminRoutes(holder, admin.deny)),  # /admin/keys, /admin/usage, ...
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        # Starlette types every handler by Exception; _http_error only ever gets HTTPException.
        exception_handlers={HTTPException: _http_error,  # type: ignore[dict-item]
                            ClientDisconnect: _client_left,
                            Exception: _internal_error},
    )
    # No trailing-slash redirects: Starlette builds their Location from the Host header.
    app.router.redirect_slashes = False
    # What no route above matches: plugins' API routes (/v1/files, /dashboard, ...), else 404.
    app.router.default = api_routes = PluginApiRoutes(holder, app.router.default)
    return RequestGuard(FastPath(app, {
        "/v1/chat/completions": api.chat_completions,
        "/v1/completions": api.completions,
        "/v1/embeddings": api.embeddings,
        "/v1/images/generations": api.images,
        "/v1/audio/speech": api.speech,
        "/v1/audio/transcriptions": api.transcriptions,
    }), reloader)


def _admin_only(deny, endpoint):
    """``endpoint`` behind the admin token (when one is configured)."""
    async def guarded(request: Request) -> Response:
        return deny(request) or await endpoint(request)

    return guarded


class FastPath:
    """Sends the hot endpoints (POST /v1/chat/completions, /v1/completions, /v1/embeddings)
    straight to their handlers, past Starlette's router and middleware stack, which they do
    not need: they build every answer, errors included, themselves. Everything else, lifespan
    included, goes through Starlette."""

    def __init__(self, app: Starlette, endpoints: dict):
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                watch = DisconnectWatch(receive)
                request = Request(scope, watch)
                DRAIN.enter()  # a shutdown waits for it (server.drain_timeout)
                try:
                    try:
                        response = await endpoint(request)
                    except ClientDisconnect:  # gone before its body arrived whole
                        await _client_left(request, None)
                        return
                    except Exception as exc:  # a bug: answer in OpenAI's shape, as Starlette would
                        response = await _internal_error(request, exc)
                    finally:
                        watch.stop()
                    await response(scope, receive, send)
                except asyncio.CancelledError:
                    if not watch.disconnected:
                        raise
                    task = asyncio.current_task()
                    assert task is not None  # this handler runs in the request's task
                    task.uncancel()  # the client left: nobody to answer
                    log_request(None, scope["path"], request.headers.get("x-request-id", ""),
                                499, None, "the client closed the connection before the answer",
                                "client_disconnected")
                finally:
                    DRAIN.leave()
                return
        await self.app(scope, receive, send)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return Response(openai_error_body(message, kind), status_code=exc.status_code,
                    media_type="application/json", headers=exc.headers)


async def _client_left(request: Request, exc: Exception | None) -> Response:
    """A client gone before its request body arrived whole: no gateway failure, nobody to
    answer. Logged 408 when the body stopped arriving (server.body_timeout closed the
    connection), else 499."""
    if request.scope.get(BODY_TIMED_OUT):
        status, error = 408, ("the request body stopped arriving: nothing of it came for "
                              "server.body_timeout")
    else:
        status, error = 499, "the client closed the connection before its request body arrived"
    log_request(None, request.url.path, request.headers.get("x-request-id", ""), status, None,
                error, "client_disconnected")
    return Response(status_code=status)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("internal_error", path=request.url.path, exc_info=exc)
    return Response(openai_error_body("internal error in the gateway; see its log", "server_error"),
                    status_code=500, media_type="application/json")
