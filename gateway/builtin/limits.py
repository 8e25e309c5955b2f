"""Built-in plugin: rate limits, budgets and usage accounting (middleware/limits.py), the
/admin/usage report, and the state backend's health in /readyz and /metrics."""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client.core import GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import hookimpl
from ..hookspecs import PluginContext, Readiness
from ..middleware.limits import Limits, RateHeaders
from ..middleware.state_backend import counters_for
from ..middleware.usage import period_range, query_usage, usage_db
from ..state.counters import Counters
from ._json import json_response

CLOSED = ("state backend unreachable and server.state_outage is closed: limited requests "
          "get 503")


class StateReadiness:
    """/readyz reports the counters' backend as "state"; with `state_outage: closed`, an
    unreachable backend makes the gateway not ready (limited requests would get 503)."""

    name = "state"

    def __init__(self, counters: Counters):
        self.counters = counters

    async def check(self) -> Readiness:
        await self.counters.refresh()
        state = self.counters.status()
        closed = not state["healthy"] and state.get("mode") == "closed"
        return Readiness(not closed, state, CLOSED if closed else "")


class StateMetrics:
    def __init__(self, counters: Counters):
        self.counters = counters

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("gateway_state_backend_up", "1 while the state backend "
                               "(counters) answers, 0 during an outage", labels=["backend"])
        up.add_metric([self.counters.backend], 1.0 if self.counters.healthy else 0.0)
        yield up


class UsageReport:
    def __init__(self, data_dir: str):
        self.db = usage_db(data_dir)

    async def report(self, request: Request) -> Response:
        """Requests, tokens and cost: ?key=NAME&period=today|month|YYYY-MM|YYYY-MM-DD|all
        &group_by=key,route,target,day"""
        params = request.query_params
        since, until = period_range(params.get("period"))
        group = tuple(params.get("group_by", "key,route,target").split(","))
        rows = query_usage(self.db, key=params.get("key"), since=since, until=until,
                           group_by=group)
        return json_response({"since": since, "until": until, "usage": rows})


@hookimpl
def request_middleware(config: dict, context: PluginContext) -> Limits:
    """Built in, always on: keys created at run time may carry limits and budgets at any
    moment. Its response methods settle what the request reserved."""
    return Limits(context)


@hookimpl
def response_headers(config: dict, context: PluginContext) -> RateHeaders:
    return RateHeaders()


@hookimpl
def admin_routes(config: dict, context: PluginContext) -> list[Any]:
    return [Route("/usage", UsageReport(context.data_dir).report, methods=["GET"])]


@hookimpl
def readiness_check(config: dict, context: PluginContext) -> StateReadiness:
    return StateReadiness(counters_for(context))


@hookimpl
def metrics_collector(config: dict, context: PluginContext) -> StateMetrics:
    return StateMetrics(counters_for(context))
