"""Alert webhooks (server/alerts.py): events from the breaker and the reloader reach the
configured receiver, signed, retried on 5xx, deduplicated within the cool-down, and never
slow a request down."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from gateway.config.compiler import compile_bytes
from gateway.events import CIRCUIT_OPEN, emit
from gateway.server.alerts import AlertDispatcher
from gateway.server.reload import GraphHolder

from ..background_app import free_port
from ..fake_upstream import FakeOpenAI
from ..fake_webhook import FakeWebhook
from ..inprocess_gateway import poll

SECRET = "whsec-test-0123456789"
UPSTREAM_KEY = "sk-upstream-secret-abcdef123456"

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
  circuit_breaker: {{failure_threshold: 1, cooldown: 60s}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}", api_key: "{key}"}}
  demo: {{type: mock}}
routes:
  chat: {{target: {{provider: up, model: m}}}}
  quick: {{target: {{provider: demo, model: q}}}}
observability:
  alerts:
{hooks}
"""


def hook_entry(url: str, on: str = "[circuit_open, config_rejected]", extra: str = "") -> str:
    return f'    - {{on: {on}, webhook: "{url}", secret: "${{ALERT_SECRET}}"{extra}}}\n'


@pytest.fixture
def webhook():
    fake = FakeWebhook(SECRET).start()
    yield fake
    fake.stop()


def start(gateway_app, upstream: FakeOpenAI, hooks: str):
    text = CONFIG.format(base_url=upstream.base_url, key=UPSTREAM_KEY, hooks=hooks)
    return gateway_app(text, env={"ALERT_SECRET": SECRET}, watch=False)


def chat(gw, route: str = "chat"):
    return gw.post("/v1/chat/completions",
                   json={"model": route, "messages": [{"role": "user", "content": "hi"}]})


def deliveries(webhook: FakeWebhook, count: int, timeout: float = 5.0):
    return poll(lambda: list(webhook.deliveries), lambda d: len(d) >= count, timeout,
                f"{count} webhook deliveries")


def test_circuit_open_reaches_the_webhook_signed_and_without_secrets(gateway_app, upstream,
                                                                     webhook):
    """The request that opens a circuit makes one signed JSON delivery naming the target;
    neither the webhook secret nor the provider's key is in it."""
    gw = start(gateway_app, upstream, hook_entry(webhook.url))
    upstream.script("m", 500)
    assert chat(gw).status_code == 500
    [delivery] = deliveries(webhook, 1)
    assert webhook.signature_ok(delivery)
    body = delivery.body
    assert (body["event"], body["subject"]) == ("circuit_open", "up/m")
    assert "failures" in body["details"]["reason"]
    assert body["config_version"] == 1 and body["id"] == delivery.headers["x-gateway-delivery"]
    assert delivery.headers["x-gateway-event"] == "circuit_open"
    assert delivery.headers["content-type"] == "application/json"
    assert abs(int(delivery.headers["x-gateway-timestamp"]) - time.time()) < 60
    assert SECRET.encode() not in delivery.raw and UPSTREAM_KEY.encode() not in delivery.raw
    metrics = poll(lambda: gw.get("/metrics").text,
                   lambda text: 'gateway_alerts_total{outcome="delivered"} 1.0' in text, 5,
                   "the delivery counted in /metrics")
    assert 'gateway_alerts_total{outcome="queued"} 1.0' in metrics
    alerts = [json.loads(line) for line in gw.log().splitlines() if '"event":"alert"' in line]
    assert [(a["kind"], a["subject"]) for a in alerts] == [("circuit_open", "up/m")]


def test_a_tampered_body_fails_the_signature_check(gateway_app, upstream, webhook):
    """The receiver's check is real: the same delivery with one byte changed does not verify."""
    gw = start(gateway_app, upstream, hook_entry(webhook.url))
    upstream.script("m", 500)
    chat(gw)
    [delivery] = deliveries(webhook, 1)
    delivery.raw = delivery.raw.replace(b"up/m", b"up/x")
    assert not webhook.signature_ok(delivery)


def test_a_500_from_the_webhook_is_retried(gateway_app, upstream, webhook):
    """The receiver fails once: the same delivery (same id, signed anew) comes again."""
    webhook.answer(500)
    gw = start(gateway_app, upstream, hook_entry(webhook.url))
    upstream.script("m", 500)
    chat(gw)
    first, second = deliveries(webhook, 2)
    assert first.headers["x-gateway-delivery"] == second.headers["x-gateway-delivery"]
    assert first.raw == second.raw and webhook.signature_ok(second)
    poll(gw.log, lambda text: '"alert_delivered"' in text, 5, "alert_delivered logged")
    delivered = [json.loads(line) for line in gw.log().splitlines() if '"alert_delivered"' in line]
    assert delivered[0]["attempts"] == 2 and delivered[0]["webhook"] == f"http://127.0.0.1:{webhook.port}"


def test_a_4xx_from_the_webhook_is_final(gateway_app, upstream, webhook):
    """A receiver that refuses the body (400) is not asked again; the failure is logged."""
    webhook.answer(400)
    gw = start(gateway_app, upstream, hook_entry(webhook.url))
    upstream.script("m", 500)
    chat(gw)
    deliveries(webhook, 1)
    poll(gw.log, lambda text: '"alert_undelivered"' in text, 5, "alert_undelivered logged")
    assert '"error":"HTTP 400"' in gw.log()
    assert len(webhook.deliveries) == 1


def test_slow_and_dead_webhooks_do_not_slow_requests(gateway_app, upstream, webhook):
    """One receiver takes 3 s to answer, another is not listening: the request that opens the
    circuit, and those after it, are answered at once all the same."""
    webhook.delay = 3.0
    dead = f"http://127.0.0.1:{free_port()}/hook"
    gw = start(gateway_app, upstream, hook_entry(webhook.url) + hook_entry(dead))
    upstream.script("m", 500)
    began = time.monotonic()
    assert chat(gw).status_code == 500
    opened = time.monotonic() - began
    timings = []
    for _ in range(20):
        began = time.monotonic()
        assert chat(gw, "quick").status_code == 200
        timings.append(time.monotonic() - began)
    deliveries(webhook, 1)  # the slow receiver did get it, while the requests went on
    assert webhook.deliveries[0].at - began < 3.0
    assert opened < 1.0 and max(timings) < 0.5, (opened, timings)


def test_repeats_within_the_cooldown_are_sent_once(gateway_app, upstream, webhook, tmp_path):
    """Two rejected reloads of the same file: two `alert` log events, one delivery, which
    lists the errors with their positions."""
    gw = start(gateway_app, upstream, hook_entry(webhook.url))
    config = tmp_path / "gateway.yaml"
    good = config.read_text()
    config.write_text(good.replace("routes:", "routes:\n  bad: {target: {provider: nope, model: x}}"))
    for _ in range(2):
        assert gw.post("/admin/reload").status_code == 422
    [delivery] = deliveries(webhook, 1)
    body = delivery.body
    assert (body["event"], body["subject"]) == ("config_rejected", str(config))
    assert body["details"]["source"] == "admin" and body["details"]["error_count"] == 1
    assert "gateway.yaml:10:28: $.routes.bad.target.provider" in body["details"]["errors"][0]
    assert "unknown provider 'nope'" in body["details"]["errors"][0]
    alerts = [a for a in map(json.loads, gw.log().splitlines()) if a["event"] == "alert"]
    assert [a["kind"] for a in alerts] == ["config_rejected"] * 2
    time.sleep(0.3)  # a second delivery would have been queued at once
    assert len(webhook.deliveries) == 1


def test_only_the_events_a_webhook_asked_for(gateway_app, upstream, webhook):
    """A webhook on config_rejected only hears nothing of an opened circuit."""
    other = FakeWebhook(SECRET).start()
    try:
        gw = start(gateway_app, upstream, hook_entry(webhook.url, "[config_rejected]")
                   + hook_entry(other.url, "[circuit_open]"))
        upstream.script("m", 500)
        chat(gw)
        deliveries(other, 1)
        time.sleep(0.2)
        assert webhook.deliveries == []
    finally:
        other.stop()


async def test_a_full_queue_drops_events_without_waiting(webhook):
    """Events beyond the queue are counted as dropped; emitting never waits for delivery."""
    webhook.delay = 5.0
    text = ("version: 1\nproviders: {d: {type: mock}}\nroutes: {a: {target: {provider: d, model: m}}}\n"
            f"observability: {{alerts: [{{on: [circuit_open], webhook: '{webhook.url}'}}]}}\n")
    dispatcher = AlertDispatcher(GraphHolder(compile_bytes(text.encode(), "t.yaml")), max_queue=2)
    dispatcher.start()
    try:
        began = time.monotonic()
        for i in range(50):
            emit(CIRCUIT_OPEN, f"p/t{i}", reason="test")
        assert time.monotonic() - began < 0.5
        assert dispatcher.counts["queued"] == 2 and dispatcher.counts["dropped"] == 48
        await asyncio.sleep(0)
    finally:
        await dispatcher.stop(grace=0.1)
