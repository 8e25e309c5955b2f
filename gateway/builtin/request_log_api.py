"""GET /admin/stats, GET /admin/logs and GET /admin/logs/{request_id} over the request log
(docs/observability.md "Stats API"). Queries run in a worker thread, on a connection of
their own (WAL: they never wait for the writer)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any, Callable, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..store import logs_db
from ..store.logs_stats import GROUPS, stats
from ..units import seconds
from ._json import json_response

T = TypeVar("T")

WINDOW = (300.0, 30 * 86400.0)  # 5m .. 30d
DEFAULT_WINDOW = "1h"
DEFAULT_BUCKETS, MAX_BUCKETS = 60, 500
DEFAULT_LIMIT, MAX_LIMIT = 50, 1000
OFF = ("observability.request_log is off: there is no request log to read (turn it on in "
       "gateway.yaml)")


class BadParameter(ValueError):
    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


def _error(status: int, message: str, code: str, param: str | None = None) -> Response:
    return json_response({"error": {"message": message, "type": "invalid_request_error",
                                    "code": code, "param": param}}, status)


def duration(value: str | None, param: str, default: str | None = None,
             bounds: tuple[float, float] | None = None) -> float | None:
    """A duration query parameter (5m, 1h, 7d, or seconds) in seconds; BadParameter naming
    ``param`` and what it may be."""
    value = value if value not in (None, "") else default
    if value is None:
        return None
    allowed = "a duration such as 5m, 1h or 7d" + (
        f", from {_text(bounds[0])} to {_text(bounds[1])}" if bounds else "")
    try:
        found = float(value) if value.replace(".", "", 1).isdigit() else seconds(value)
    except ValueError:
        raise BadParameter(param, f"{param} must be {allowed}, not {value!r}") from None
    if found <= 0 or (bounds and not bounds[0] <= found <= bounds[1]):
        raise BadParameter(param, f"{param} must be {allowed}, not {value!r}")
    return found


def integer(value: str | None, param: str, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadParameter(param, f"{param} must be a whole number from {low} to {high}, "
                           f"not {value!r}")
    return int(value)


def _text(value: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"


class LogsApi:
    def __init__(self, file: str | None):
        self.file = file  # None: the request log is off

    async def _read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """``job`` on a connection of its own, in a worker thread (the file is created,
        empty, if no request was logged yet)."""
        assert self.file is not None
        file = self.file

        def read() -> T:
            conn = logs_db.connect(file)
            try:
                return job(conn)
            finally:
                conn.close()

        return await asyncio.to_thread(read)

    def _off(self) -> Response:
        return _error(404, OFF, "request_log_off")

    async def stats(self, request: Request) -> Response:
        """?window=1h&group_by=route|target|key|model&buckets=60"""
        if self.file is None:
            return self._off()
        params = request.query_params
        try:
            window = duration(params.get("window"), "window", DEFAULT_WINDOW, WINDOW)
            buckets = integer(params.get("buckets"), "buckets", DEFAULT_BUCKETS, 1, MAX_BUCKETS)
            group_by = params.get("group_by") or None
            if group_by is not None and group_by not in GROUPS:
                raise BadParameter("group_by", f"group_by must be one of {', '.join(GROUPS)}, "
                                   f"not {group_by!r}")
        except BadParameter as exc:
            return _error(400, str(exc), "invalid_parameter", exc.param)
        assert window is not None
        now = time.time()

        def job(conn: sqlite3.Connection) -> dict[str, Any]:
            return stats(conn, now=now, window_s=window, buckets=buckets, group_by=group_by)

        return json_response(await self._read(job))

    async def logs(self, request: Request) -> Response:
        """?limit=50&status=5xx|4xx|error|ok|CODE&route=R&since=1h&before_id=N"""
        if self.file is None:
            return self._off()
        params = request.query_params
        try:
            where = filter_of(params.get("limit"), params.get("status"), params.get("route"),
                              params.get("since"), params.get("before_id"))
        except BadParameter as exc:
            return _error(400, str(exc), "invalid_parameter", exc.param)
        rows = await self._read(lambda conn: logs_db.rows(conn, where))
        return json_response({"data": rows})

    async def one(self, request: Request) -> Response:
        """One request's row, with its bodies when they were logged."""
        if self.file is None:
            return self._off()
        request_id = request.path_params["request_id"]
        row = await self._read(lambda conn: logs_db.by_request_id(conn, request_id))
        if row is None:
            return _error(404, f"no request {request_id!r} in the request log", "not_found",
                          "request_id")
        return json_response(row)


def filter_of(limit: str | None, status: str | None, route: str | None, since: str | None,
              before_id: str | None, now: float | None = None) -> logs_db.Filter:
    """A listing's filter from its parameters (query or command line); BadParameter."""
    if status:
        try:
            logs_db.status_clause(status)
        except ValueError as exc:
            raise BadParameter("status", str(exc)) from None
    ago = duration(since, "since")
    return logs_db.Filter(
        limit=integer(limit, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        status=status or None, route=route or None,
        since=(now if now is not None else time.time()) - ago if ago is not None else None,
        before_id=integer(before_id, "before_id", 0, 1, 2**62) or None,
    )


def routes(file: str | None) -> list[Route]:
    api = LogsApi(file)
    return [Route("/stats", api.stats, methods=["GET"]),
            Route("/logs", api.logs, methods=["GET"]),
            Route("/logs/{request_id}", api.one, methods=["GET"])]
