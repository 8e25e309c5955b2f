"""Built-in plugin: GET /dashboard, one self-contained page (inline CSS and JavaScript, charts
drawn as SVG; nothing loaded from anywhere else) that reads the admin API with the admin token:
/admin/stats (charts, per-route and per-target numbers), /admin/health (breakers),
/admin/config and /admin/config/versions (history and diffs), /admin/logs (failed requests).

The page itself holds no data and is served to anyone; the token is asked for in a form (or
taken from the URL fragment `#token=...`, which never reaches the server) and kept in the
tab's sessionStorage. A Content-Security-Policy allows only the page's own script (by hash) and
requests to this gateway. docs/observability.md#dashboard.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import hookimpl
from ..hookspecs import PluginContext

PAGE = files(__package__).joinpath("dashboard.html").read_bytes()
_SCRIPT = re.search(rb"<script>(.*?)</script>", PAGE, re.S)
assert _SCRIPT is not None
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.group(1)).digest()).decode()
HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def dashboard(request: Request) -> Response:
    return Response(PAGE, media_type="text/html; charset=utf-8", headers=HEADERS)


@hookimpl
def api_routes(config: dict, context: PluginContext) -> list[Any]:
    return [Route("/dashboard", dashboard, methods=["GET"])]
