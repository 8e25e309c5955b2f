"""The Starlette route of a front door: hands each request to the server's dispatcher."""

from __future__ import annotations

from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..hookspecs import DISPATCH_SCOPE, FrontDoor


class FrontDoorRoute(Route):
    """POST ``path`` through ``door`` (or through ``handler``, which uses the door its own
    way). ``door`` also words the 401 the server answers before the route runs
    (plugin_routes.py looks for it)."""

    def __init__(self, path: str, door: FrontDoor,
                 handler: Callable[[Request], Awaitable[Response]] | None = None,
                 methods: tuple[str, ...] = ("POST",)):
        self.door = door
        super().__init__(path, handler or self.serve, methods=list(methods))

    async def serve(self, request: Request) -> Response:
        response: Response = await request.scope[DISPATCH_SCOPE](request, self.door)
        return response
