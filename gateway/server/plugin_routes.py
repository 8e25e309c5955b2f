"""The routes that plugins contribute (hookspecs.admin_routes, hookspecs.api_routes), built-ins
included.

They come from the running config, so a reload adds or removes them with the rest of it.
Admin routes: every path under /admin that the server does not answer itself comes here; one a
plugin serves needs the admin token, like the server's own admin routes; any other is a 404.
API routes: any path the server's own routes do not match comes here; under /v1/ the caller is
identified first, as for every API request, and the key is handed on in the scope.
"""

from __future__ import annotations

from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import GatewayError
from ..graph.graph import RoutingGraph
from ..hookspecs import DISPATCH_SCOPE, KEY_SCOPE
from .errors import gateway_error_response
from .frontdoor import Dispatcher
from .reload import GraphHolder



class _PluginRouter:
    """A Router over one attribute of the running graph, rebuilt when the graph changes."""

    def __init__(self, holder: GraphHolder, attribute: str):
        self.holder = holder
        self.attribute = attribute
        self._built: tuple[RoutingGraph | None, Router | None] = (None, None)

    def router(self, default: ASGIApp | None = None) -> Router:
        graph = self.holder.current
        built, router = self._built
        if built is not graph or router is None:
            router = Router(routes=list(getattr(graph, self.attribute)), redirect_slashes=False,
                            default=default)
            self._built = (graph, router)
        return router

    def matches(self, router: Router, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is not Match.NONE for route in router.routes)


class PluginAdminRoutes(_PluginRouter):
    def __init__(self, holder: GraphHolder, deny: Callable[[Request], Any]):
        super().__init__(holder, "admin_routes")
        self.deny = deny  # the admin token check: a Response, or None to go on

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        router = self.router()
        if self.matches(router, scope):
            denied = self.deny(Request(scope))
            if denied is not None:
                await denied(scope, receive, send)
                return
        await router(scope, receive, send)


class PluginApiRoutes(_PluginRouter):
    """The server router's ``default``: what no server route matched. ``not_found`` answers
    when no plugin route matches either."""

    def __init__(self, holder: GraphHolder, not_found: ASGIApp):
        super().__init__(holder, "api_routes")
        self.not_found = not_found
        self.dispatcher = Dispatcher(holder)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        router = self.router(default=self.not_found)
        matched = self.matched(router, scope) if scope["type"] == "http" else None
        # The app's path (and the route's), not the request's: under a root_path (a prefix the
        # ASGI server serves the app at) the request's is "/prefix/v1/...": the check was
        # skipped and the caller served as the anonymous owner.
        path, root = scope.get("path", ""), scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root):]
        if matched is not None and (path.startswith("/v1/")
                                    or str(getattr(matched, "path", "")).startswith("/v1/")):
            graph = self.holder.current
            try:
                scope[KEY_SCOPE] = graph.identify(Request(scope).headers) \
                    if graph.identify is not None else None
            except GatewayError as err:
                headers = {"x-gateway-config-version": str(graph.version)}
                door = getattr(matched, "door", None)  # a front door answers in its own shape
                if door is not None:
                    await Response(door.error(err.status, err.message, err.openai_body()), err.status,
                                   headers=headers, media_type="application/json"
                                   )(scope, receive, send)
                else:
                    await gateway_error_response(err, headers)(scope, receive, send)
                return
            scope[DISPATCH_SCOPE] = self.dispatcher
        await router(scope, receive, send)

    @staticmethod
    def matched(router: Router, scope: Scope) -> BaseRoute | None:
        return next((route for route in router.routes
                     if route.matches(scope)[0] is not Match.NONE), None)
