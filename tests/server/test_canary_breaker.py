"""A canary arm whose circuit is open gives its share to the stable arm, in process, against
a fake upstream that fails."""

from __future__ import annotations

from ..fake_upstream import FakeOpenAI
from .inprocess import app_client

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
  circuit_breaker: {{failure_threshold: 2, cooldown: 60s, min_requests: 100}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}"}}
  demo: {{type: mock}}
routes:
  rollout:
    canary:
      percent: 50
      stable: {{target: {{provider: demo, model: stable}}}}
      canary: {{target: {{provider: up, model: flaky}}}}
"""


def _chat(user: str) -> dict:
    return {"json": {"model": "rollout", "messages": [{"role": "user", "content": "hi"}]},
            "headers": {"x-gateway-metadata": f'{{"user": "{user}"}}'}}


async def test_open_canary_arm_sends_its_traffic_to_stable(upstream: FakeOpenAI, tmp_path):
    """Once the canary's circuit is open, no caller gets 503 'circuit open': all are answered
    by the stable arm, and the canary's upstream sees nothing more."""
    upstream.script("flaky", *([500] * 10))
    async with app_client(CONFIG.format(base_url=upstream.base_url), tmp_path) as client:
        for i in range(100):  # until two requests have failed on the canary: its circuit opens
            if len(upstream.requests) == 2:
                break
            await client.post("/v1/chat/completions", **_chat(f"warmup-{i}"))
        assert len(upstream.requests) == 2
        answers = [await client.post("/v1/chat/completions", **_chat(f"user-{i}"))
                   for i in range(40)]
    assert {r.status_code for r in answers} == {200}
    assert {r.headers["x-gateway-target"] for r in answers} == {"demo/stable"}
    assert len(upstream.requests) == 2
