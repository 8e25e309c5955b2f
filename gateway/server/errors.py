"""Errors in OpenAI's shape: {"error": {"message", "type", "code", "param"}}."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from ..errors import GatewayError, UpstreamError, openai_error_body
from ..graph.context import Attempt, RequestContext

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


def gateway_error_response(err: GatewayError, headers: dict[str, str]) -> Response:
    return Response(
        err.openai_body(),
        status_code=err.status,
        headers={**headers, **err.headers},
        media_type="application/json",
    )


def upstream_failure(err: UpstreamError, ctx: RequestContext) -> tuple[int, bytes, dict[str, str]]:
    """The client's answer when no attempt succeeded.

    A client error from upstream (400, 401, 404, 422, ...) is passed through as it is: the
    request is wrong, and the provider's words say why. Otherwise the status is 408 when every
    attempt timed out, else the last upstream status (502 for a connection failure), and the
    message lists every attempt.
    """
    if err.from_upstream and err.error_class == "client" and err.body is not None:
        return err.status, err.body, err.headers
    attempts = ctx.attempts
    if attempts and all(a.error_class == "timeout" for a in attempts):
        status, kind = 408, "timeout_error"
    elif attempts and all(a.error_class == "unsupported" for a in attempts):
        status, kind = 400, "invalid_request_error"
    elif err.error_class == "guardrail":
        status, kind = 503, "guardrail_error"
    elif err.error_class == "circuit_open" and attempts and all(
            a.error_class == "circuit_open" for a in attempts):
        status, kind = 503, "service_unavailable"
    elif err.from_upstream:
        status, kind = err.status, _TYPES.get(err.status, "upstream_error")
    else:
        status, kind = 502, "upstream_error"
    tried = "; ".join(_describe(a) for a in attempts)
    message = f"{err.message} (after {len(attempts)} attempt{'s' if len(attempts) != 1 else ''}: {tried})"
    headers = {}
    if status == 429 and err.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(err.retry_after)))
    return status, openai_error_body(message, kind, err.error_class), headers


def _describe(attempt: Attempt) -> str:
    if attempt.error_class in ("timeout", "connection"):
        return f"{attempt.target} {attempt.error_class}"
    return f"{attempt.target} {attempt.status} {attempt.error_class or 'ok'}"


def json_response(data, status: int = 200) -> Response:
    """A JSON answer of the admin and operational endpoints."""
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")
