"""Built-in plugin: the response cache (middleware/cache.py), its counts in /metrics, and
`gateway cache stats|clear`."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily

from .. import hookimpl
from ..hookspecs import PluginContext
from ..middleware.cache import ResponseCache, cache_backend, policies_of
from ..state.response_cache import ResponseCacheBackend
from . import cache_cli


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


def _enabled(context: PluginContext) -> bool:
    return bool(policies_of(context.gateway_config))


@hookimpl
def request_middleware(config: dict, context: PluginContext) -> ResponseCache | None:
    """Built in: present only when some route has the cache on; its response methods store."""
    policies = policies_of(context.gateway_config)
    return ResponseCache(context, policies) if policies else None


@hookimpl
def metrics_collector(config: dict, context: PluginContext) -> CacheMetrics | None:
    return CacheMetrics(cache_backend(context)) if _enabled(context) else None


@hookimpl
def register_commands(subparsers) -> None:
    cache_cli.register(subparsers)
