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
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import GatewayError
from ..graph.graph import RoutingGraph
from .errors import gateway_error_response
from .reload import GraphHolder

KEY_SCOPE = "gateway.key"  # where an API route finds the caller's KeySpec (None: no key needed)


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        router = self.router(default=self.not_found)
        if scope["type"] == "http" and scope["path"].startswith("/v1/") \
                and self.matches(router, scope):
            graph = self.holder.current
            try:
                scope[KEY_SCOPE] = graph.identify(Request(scope).headers) \
                    if graph.identify is not None else None
            except GatewayError as err:
                await gateway_error_response(err, {"x-gateway-config-version": str(graph.version)}
                                             )(scope, receive, send)
                return
        await router(scope, receive, send)
