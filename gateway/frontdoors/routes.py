"""The Starlette route of a front door: hands each request to the server's dispatcher."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..hookspecs import DISPATCH_SCOPE, KEY_SCOPE, FrontDoor


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


def internal_request(path: str, body: bytes, key: Any, headers: Mapping[str, str] | None = None
                     ) -> Request:
    """A POST of ``body`` to ``path`` made inside the gateway (a background task's request to
    the dispatcher): ``key`` is the KeySpec it runs as (None: no key), handed on in the scope
    as the server does for a client's request."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    raw = [(b"content-type", b"application/json"),
           (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    scope = {"type": "http", "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": raw, "client": None, "server": None, KEY_SCOPE: key}
    return Request(scope, receive)
