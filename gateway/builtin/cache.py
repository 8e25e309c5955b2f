"""Built-in plugin: the response cache (middleware/cache.py), its counts in /metrics, and
`gateway cache stats|clear`."""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client.core import CounterMetricFamily
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import hookimpl
from ..graph.context import RequestContext
from ..hookspecs import PluginContext
from ..middleware.cache import HEADER, CacheState, ResponseCache, cache_backend, policies_of
from ..providers.base import UpstreamResponse
from ..state.response_cache import ResponseCacheBackend
from . import cache_cli
from ._json import json_response


class CacheMetrics:
    """Hits, misses and what the hits saved, per namespace, counted by this process."""

    def __init__(self, backend: ResponseCacheBackend):
        self.backend = backend

    def collect(self) -> Iterator[CounterMetricFamily]:
        requests = CounterMetricFamily("gateway_cache_requests", "Cacheable requests by "
                                       "namespace and result (hit, miss)",
                                       labels=["namespace", "result"])
        tokens = CounterMetricFamily("gateway_cache_saved_tokens", "Tokens answered from the "
                                     "cache instead of an upstream", labels=["namespace"])
        usd = CounterMetricFamily("gateway_cache_saved_usd", "USD not spent thanks to cache "
                                  "hits", labels=["namespace"])
        for namespace, (hits, misses, saved_tokens, saved_usd) in sorted(
                self.backend.totals.items()):
            requests.add_metric([namespace, "hit"], hits)
            requests.add_metric([namespace, "miss"], misses)
            tokens.add_metric([namespace], saved_tokens)
            usd.add_metric([namespace], saved_usd)
        yield from (requests, tokens, usd)


class CacheHeaders:
    def headers(self, ctx: RequestContext, response: UpstreamResponse) -> dict[str, str]:
        state = ctx.state_for(CacheState)
        return {HEADER: state.result if state is not None else "skip"}


class CacheReport:
    """GET /admin/cache: hits, misses and savings per namespace counted by this process since
    it started (`gateway cache stats` has every process's, from the backend)."""

    def __init__(self, backend: ResponseCacheBackend):
        self.backend = backend

    async def report(self, request: Request) -> Response:
        rows = [{"namespace": ns, "hits": hits, "misses": misses, "saved_tokens": tokens,
                 "saved_usd": round(usd, 6)}
                for ns, (hits, misses, tokens, usd) in sorted(self.backend.totals.items())]
        return json_response({"backend": self.backend.backend, "namespaces": rows})


def _enabled(context: PluginContext) -> bool:
    return bool(policies_of(context.gateway_config))


@hookimpl
def request_middleware(config: dict, context: PluginContext) -> ResponseCache | None:
    """Built in: present only when some route has the cache on; its response methods store."""
    policies = policies_of(context.gateway_config)
    return ResponseCache(context, policies) if policies else None


@hookimpl
def response_headers(config: dict, context: PluginContext) -> CacheHeaders | None:
    """x-gateway-cache on streamed answers too (on_response sees whole answers only)."""
    return CacheHeaders() if _enabled(context) else None


@hookimpl
def admin_routes(config: dict, context: PluginContext) -> list[Any] | None:
    if not _enabled(context):
        return None
    return [Route("/cache", CacheReport(cache_backend(context)).report, methods=["GET"])]


@hookimpl
def metrics_collector(config: dict, context: PluginContext) -> CacheMetrics | None:
    return CacheMetrics(cache_backend(context)) if _enabled(context) else None


@hookimpl
def register_commands(subparsers) -> None:
    cache_cli.register(subparsers)
