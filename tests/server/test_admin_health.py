"""/admin/health and error messages, in process: per-route counters, ISO 8601 times, durations
printed rounded."""

from __future__ import annotations

import re
import time

from gateway.graph.nodes import TargetNode
from gateway.types import walk

from .inprocess import app_client

SHARED = """
version: 1
providers:
  demo: {type: mock}
  slow: {type: mock, latency: 5s, health_check: {interval: 1h}}
routes:
  a: {target: {provider: demo, model: m}}
  b: {target: {provider: demo, model: m}}
  late: {target: {provider: slow, model: m, timeout: 10s}}
"""


def chat(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def test_route_counters_count_that_routes_requests(tmp_path):
    """Two routes share one target: each route's entry counts its own requests; the target's
    total over every route is beside it."""
    async with app_client(SHARED, tmp_path) as client:
        for model in ("a", "a", "a", "b"):
            assert (await client.post("/v1/chat/completions", json=chat(model))).status_code == 200
        routes = (await client.get("/admin/health")).json()["routes"]
    a, b = routes["a"]["targets"][0], routes["b"]["targets"][0]
    assert (a["requests"], b["requests"]) == (3, 1)
    assert a["target_requests"] == b["target_requests"] == 4
    assert a["errors"] == b["errors"] == 0


async def test_provider_check_time_is_iso_8601(tmp_path):
    """A provider's last health check is shown as an ISO 8601 UTC time, not a unix float."""
    async with app_client(SHARED, tmp_path) as client:
        graph = client.reloader.holder.current
        node = next(n for n in walk(graph.routes["late"].node) if isinstance(n, TargetNode))
        node.health.checked_at = time.time()
        providers = (await client.get("/admin/health")).json()["providers"]
    checked = providers["slow"]["checked_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", checked), checked
    assert checked == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(node.health.checked_at))


async def test_timeout_clipped_by_the_deadline_is_printed_rounded(tmp_path):
    """x-gateway-timeout clips the target's timeout to what is left (0.29968s, say): the
    error says so to the millisecond."""
    async with app_client(SHARED, tmp_path) as client:
        reply = await client.post("/v1/chat/completions", json=chat("late"),
                                  headers={"x-gateway-timeout": "300ms"})
    assert reply.status_code == 408
    message = reply.json()["error"]["message"]
    within = re.search(r"no answer within (\S+)s", message)
    assert within, message
    assert re.fullmatch(r"0\.\d{1,3}", within.group(1)), message
