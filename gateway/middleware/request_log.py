"""One structured log event per request: route, target, status, attempts, latency."""

from __future__ import annotations

import time

from ..errors import GatewayError, UpstreamError
from ..graph.context import RequestContext
from ..graph.pipeline import Handler
from ..logs import get_logger
from ..providers.base import UpstreamResponse

log = get_logger("gateway.request")


class RequestLog:
    name = "request_log"

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> UpstreamResponse:
        try:
            response = await call_next(ctx)
        except (UpstreamError, GatewayError) as err:
            self._log(ctx, err.status, getattr(err, "target", None), error=err.message)
            raise
        self._log(ctx, response.status, response.target)
        return response

    @staticmethod
    def _log(ctx: RequestContext, status: int, target: str | None, error: str | None = None) -> None:
        log.info(
            "request",
            request_id=ctx.request_id,
            endpoint=ctx.endpoint,
            route=ctx.route,
            target=target,
            status=status,
            attempts=len(ctx.attempts),
            stream=ctx.stream,
            key=ctx.key_name,
            latency_ms=round((time.monotonic() - ctx.started) * 1000, 2),
            error=error,
        )
