"""Active health checks: for each provider with `health_check`, a background task asks it a
cheap question (GET /models) every interval. After `failures` failed checks in a row the
provider is marked unhealthy, and its targets are skipped like open circuits until a check
passes. Tasks follow the config: reconciled after every swap."""

from __future__ import annotations

import asyncio
import time

from ..units import seconds
from ..graph.graph import RoutingGraph
from ..events import PROVIDER_DOWN, emit
from ..logs import get_logger
from ..providers.base import Provider
from ..providers.scrub import Scrubber
from ..state.registry import StateRegistry
from ..state.target import ProviderHealth

log = get_logger("gateway.health")


class HealthMonitor:
    def __init__(self, state: StateRegistry):
        self.state = state
        self.tasks: dict[str, tuple[tuple, asyncio.Task]] = {}

    def reconcile(self, graph: RoutingGraph) -> None:
        wanted = {}
        for name, provider in graph.providers.items():
            spec = provider.spec.options.get("health_check")
            if spec is not None:
                wanted[name] = (provider, spec)
        for name in list(self.tasks):
            identity, task = self.tasks[name]
            if name not in wanted or _identity(*wanted[name]) != identity:
                task.cancel()
                del self.tasks[name]
        for name, (provider, spec) in wanted.items():
            if name not in self.tasks:
                health = self.state.acquire(("health", name), ProviderHealth)
                task = asyncio.get_running_loop().create_task(
                    self._loop(provider, spec, health, graph.scrubber))
                self.tasks[name] = (_identity(provider, spec), task)

    async def stop(self) -> None:
        for _, task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*(t for _, t in self.tasks.values()), return_exceptions=True)
        self.tasks.clear()

    async def _loop(self, provider: Provider, spec: dict, health: ProviderHealth,
                    scrubber: Scrubber) -> None:
        interval = seconds(spec.get("interval", "30s"))
        timeout = seconds(spec.get("timeout", "5s"))
        threshold = spec.get("failures", 2)
        while True:
            error = await provider.check_health(timeout)
            if error is not None:
                error = scrubber.text(error)
            health.checked_at = time.time()
            if error is None:
                if not health.healthy:
                    log.info("provider_healthy", provider=provider.name)
                health.healthy, health.error, health.consecutive_failures = True, None, 0
            else:
                health.consecutive_failures += 1
                health.error = error
                if health.healthy and health.consecutive_failures >= threshold:
                    health.healthy = False
                    log.warning("provider_unhealthy", provider=provider.name, error=error,
                                failures=health.consecutive_failures)
                    emit(PROVIDER_DOWN, provider.name, error=error,
                         failures=health.consecutive_failures)
            await asyncio.sleep(interval)


def _identity(provider: Provider, spec: dict) -> tuple:
    return (provider.spec.base_url, tuple(sorted(spec.items())))
