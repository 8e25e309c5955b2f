"""The JSON answer of the admin routes the built-ins contribute."""

from __future__ import annotations

import orjson
from starlette.responses import Response


def json_response(data, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")
