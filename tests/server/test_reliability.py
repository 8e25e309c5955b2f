"""Circuit breakers, health checks, retry budgets and canary rollback through the app (in
process), against a fake upstream that fails on command."""

from __future__ import annotations

import time

import httpx

from ..gateway_process import write_atomically
from ..inprocess_gateway import poll

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
  circuit_breaker: {{failure_threshold: 2, cooldown: 1s, min_requests: 100}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}"{health}}}
  demo: {{type: mock}}
routes:
  direct: {{target: {{provider: up, model: flaky}}}}
  guarded:
    fallback:
      targets:
        - target: {{provider: up, model: flaky}}
        - target: {{provider: demo, model: backup}}
{extra}
"""


def start(gateway_app, upstream, extra: str = "", health: str = ""):
    return gateway_app(CONFIG.format(base_url=upstream.base_url, extra=extra, health=health))


def post(gw, model: str, headers=None) -> httpx.Response:
    return gw.post("/v1/chat/completions", headers=headers or {},
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def health(gw) -> dict:
    return gw.get("/admin/health").json()


def target_health(gw, route: str, label: str) -> dict:
    return next(t for t in health(gw)["routes"][route]["targets"] if t["target"] == label)


def test_breaker_opens_probes_and_closes(gateway_app, upstream):
    """Two failures open the circuit: nothing more reaches the upstream (503) until the
    cooldown; then one probe goes through and its success closes the circuit."""
    gw = start(gateway_app, upstream)
    upstream.script("flaky", 500, 500)
    assert [post(gw, "direct").status_code for _ in range(2)] == [500, 500]
    sent = len(upstream.requests)
    blocked = post(gw, "direct")
    assert blocked.status_code == 503
    assert "circuit open" in blocked.json()["error"]["message"]
    assert len(upstream.requests) == sent
    assert target_health(gw, "direct", "up/flaky")["breaker"] == "open"
    time.sleep(1.05)
    assert post(gw, "direct").status_code == 200
    state = target_health(gw, "direct", "up/flaky")
    assert state["breaker"] == "closed"
    assert state["transitions"] == {"open": 1, "half_open": 1, "closed": 1}


def test_fallback_skips_open_target(gateway_app, upstream):
    """With the first target's circuit open, the fallback answers from the next at once."""
    gw = start(gateway_app, upstream)
    upstream.script("flaky", 500, 500)
    post(gw, "direct"), post(gw, "direct")
    sent = len(upstream.requests)
    r = post(gw, "guarded")
    assert r.status_code == 200 and r.headers["x-gateway-target"] == "demo/backup"
    assert len(upstream.requests) == sent


def test_breaker_state_survives_unrelated_reload_and_drops_with_its_target(gateway_app, upstream):
    """A reload that keeps the target keeps its open circuit; one that removes it drops it."""
    gw = start(gateway_app, upstream)
    upstream.script("flaky", 500, 500)
    post(gw, "direct"), post(gw, "direct")
    write_atomically(gw.config_path, CONFIG.format(
        base_url=upstream.base_url, health="",
        extra="  other: {target: {provider: demo, model: x}}"))
    gw.wait_for_version(2)
    assert post(gw, "direct").status_code == 503
    assert target_health(gw, "direct", "up/flaky")["breaker"] == "open"
    write_atomically(gw.config_path, CONFIG.format(
        base_url=upstream.base_url, health="", extra="").replace("model: flaky", "model: steady"))
    gw.wait_for_version(3)
    write_atomically(gw.config_path, CONFIG.format(base_url=upstream.base_url, health="", extra=""))
    gw.wait_for_version(4)
    assert target_health(gw, "direct", "up/flaky")["breaker"] == "closed"
    assert post(gw, "direct").status_code == 200


def test_health_checks_mark_a_provider_down_and_up(gateway_app, upstream):
    """Failing GET /models checks mark the provider unhealthy: its targets are skipped."""
    gw = start(gateway_app, upstream,
               health=", health_check: {interval: 100ms, failures: 2, timeout: 1s}")
    upstream.models_status = 503
    down = poll(lambda: health(gw)["providers"]["up"], lambda up: not up["healthy"], every=0.05)
    assert down["error"] == "GET /models answered 503"
    sent = len(upstream.requests)
    r = post(gw, "guarded")
    assert r.headers["x-gateway-target"] == "demo/backup" and len(upstream.requests) == sent
    upstream.models_status = 200
    poll(lambda: health(gw)["providers"]["up"], lambda up: up["healthy"], every=0.05)
    assert post(gw, "direct").status_code == 200


def test_retry_budget_caps_retries_during_an_outage(gateway_app, upstream):
    """With every request failing, retries stay within the route's budget."""
    extra = """  budgeted:
    retry_budget: {ratio: 0.1, window: 60s, min_retries: 2}
    target:
      provider: up
      model: down
      retry: {attempts: 3, base: 1ms, max: 2ms}
      circuit_breaker: {enabled: false}"""
    gw = start(gateway_app, upstream, extra=extra)
    upstream.script("down", *[503] * 100)
    for _ in range(20):
        assert post(gw, "budgeted").status_code == 503
    calls = sum(1 for r in upstream.requests if r.body["model"] == "down")
    assert 20 < calls <= 20 + 2 + 2  # without a budget it would be 60
    assert health(gw)["routes"]["budgeted"]["retry_budget"]["denied"] > 0


def test_canary_rolls_back_and_reports_it(gateway_app, upstream):
    """A failing canary is rolled back automatically; /admin/health shows share 0."""
    extra = """  rollout:
    canary:
      percent: 50
      stable: {target: {provider: demo, model: stable}}
      canary: {target: {provider: broken, model: next, circuit_breaker: {enabled: false}}}
      rollback: {error_rate: 0.5, min_requests: 4}"""
    text = CONFIG.format(base_url=upstream.base_url, extra=extra, health="").replace(
        "  demo: {type: mock}", "  demo: {type: mock}\n  broken: {type: mock, error_rate: 1}")
    gw = gateway_app(text)
    statuses = [post(gw, "rollout", {"x-gateway-metadata": f'{{"user": "u{i}"}}'}).status_code
                for i in range(40)]
    canary = health(gw)["routes"]["rollout"]["canaries"][0]
    assert canary["rolled_back"] is True and canary["share"] == 0.0
    assert canary["arms"]["canary"]["requests"] == 4 and canary["arms"]["canary"]["errors"] == 4
    assert statuses.count(503) == 4 and statuses[-10:] == [200] * 10
    assert '"kind":"canary_rolled_back"' in gw.log()


def test_metrics_expose_breakers_and_targets(gateway_app, upstream):
    """GET /metrics shows breaker states, transitions and target counters."""
    gw = start(gateway_app, upstream)
    upstream.script("flaky", 500, 500)
    post(gw, "direct"), post(gw, "direct")
    text = gw.get("/metrics").text
    assert 'gateway_breaker_state{state="open",target="up/flaky"} 1.0' in text
    assert 'gateway_breaker_transitions_total{target="up/flaky",to="open"} 1.0' in text
    assert 'gateway_target_errors_total{target="up/flaky"} 2.0' in text
    assert 'gateway_config_reloads_total{outcome="applied"} 0.0' in text
