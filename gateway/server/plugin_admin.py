"""The /admin/* routes that plugins contribute (hookspecs.admin_routes), built-ins included.

They come from the running config, so a reload adds or removes them with the rest of it.
Every path under /admin that the server does not answer itself comes here: one a plugin
serves needs the admin token, like the server's own admin routes; any other is a 404.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Match, Router

from ..graph.graph import RoutingGraph
from .reload import GraphHolder


class PluginAdminRoutes:
    def __init__(self, holder: GraphHolder, deny):
        self.holder = holder
        self.deny = deny  # the admin token check: a Response, or None to go on
        self._built: tuple[RoutingGraph | None, Router | None] = (None, None)

    async def __call__(self, scope, receive, send) -> None:
        router = self._router(self.holder.current)
        if any(route.matches(scope)[0] is not Match.NONE for route in router.routes):
            denied = self.deny(Request(scope))
            if denied is not None:
                await denied(scope, receive, send)
                return
        await router(scope, receive, send)

    def _router(self, graph: RoutingGraph) -> Router:
        built, router = self._built
        if built is not graph or router is None:
            router = Router(routes=list(graph.admin_routes), redirect_slashes=False)
            self._built = (graph, router)
        return router
