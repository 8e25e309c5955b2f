"""Plugins hold behind the front doors whose requests and answers go natively to a provider
(/v1/messages to Anthropic, /v1/responses to OpenAI): pii-redact's masked values never reach
the provider in the client's native body, and output-guard checks the provider's own answers
and event streams (whole and streamed, both modes). Through the real app, with the official
SDKs, the validating fake Anthropic API and the fake OpenAI Responses API."""

from __future__ import annotations

import anthropic
import httpx2
import pytest

from ..providers.fake_anthropic import API_KEY

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  claude: {{type: anthropic, base_url: "{anthropic}", api_key: {key}}}
  up: {{type: openai-compatible, base_url: "{openai}", api_key: upstream-secret}}
  oai: {{type: openai, base_url: "{openai}", api_key: upstream-secret}}
routes:
  claude: {{target: {{provider: claude, model: claude-test}}}}
  native: {{target: {{provider: oai, model: gpt-native}}}}
  claude-or-gpt:
    fallback:
      targets:
        - target: {{provider: claude, model: claude-test}}
        - target: {{provider: up, model: gpt-backup}}
plugins:
{plugins}
"""
PII = "  - {name: pii-redact, config: {mode: mask}}"
GUARD = "  - {{name: output-guard, config: {{deny: ['(?i)forbidden'], on_fail: {on_fail}}}}}"
EMAIL = "jane.doe@example.com"


@pytest.fixture
def start(fake, upstream, gateway_app):
    def start(plugins: str):
        return gateway_app(CONFIG.format(anthropic=fake.base_url, openai=upstream.base_url,
                                         key=API_KEY, plugins=plugins))
    return start


def sdk(gw) -> anthropic.Anthropic:
    http = httpx2.Client(transport=gw.client._transport, base_url=gw.base_url)
    return anthropic.Anthropic(base_url=gw.base_url, api_key="unused", max_retries=0,
                               http_client=http)


def sent_text(fake) -> str:
    return str(fake.requests[-1].body)


def test_masked_values_never_reach_anthropic_in_the_native_body(start, fake):
    gw = start(PII)
    with sdk(gw) as client:
        message = client.messages.create(
            model="claude", max_tokens=64,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": f"Write to {EMAIL}", "cache_control": {"type": "ephemeral"}}]}])
    assert EMAIL not in sent_text(fake)
    assert "Write to" in sent_text(fake)
    assert message.type == "message" and message.content[0].type == "text"
    assert '"event":"native_body_dropped"' in gw.log(), gw.log()


def test_count_tokens_sends_nothing_to_anthropic_past_a_request_plugin(start, fake):
    """count_tokens does not run the plugins' request middleware, so with one configured it
    estimates instead of sending the client's prompt (the e-mail) to Anthropic."""
    gw = start(PII)
    counted = gw.post("/v1/messages/count_tokens", json={
        "model": "claude", "messages": [{"role": "user", "content": f"Write to {EMAIL}"}]})
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
    assert counted.headers["x-gateway-token-count"] == "estimate"
    assert fake.requests == []


def test_a_request_no_plugin_changed_keeps_its_native_body(start, fake):
    gw = start(PII)
    content = [{"type": "text", "text": "Nothing personal", "cache_control": {"type": "ephemeral"}}]
    with sdk(gw) as client:
        client.messages.create(model="claude", max_tokens=64,
                               messages=[{"role": "user", "content": content}])
    assert fake.requests[-1].body["messages"] == [{"role": "user", "content": content}]


def test_guard_refuses_anthropic_answer_and_falls_back(start, fake, upstream):
    gw = start(GUARD.format(on_fail="fallback"))
    ask = [{"role": "user", "content": "say forbidden things"}]
    with sdk(gw) as client:
        with pytest.raises(anthropic.APIStatusError) as refused:
            client.messages.create(model="claude", max_tokens=64, messages=ask)
        assert refused.value.status_code == 503
        assert "output-guard" in refused.value.message
        answer = client.messages.with_raw_response.create(model="claude-or-gpt", max_tokens=64,
                                                          messages=ask)
    assert answer.headers["x-gateway-target"] == "up/gpt-backup"


def test_guard_flags_anthropic_answer(start):
    gw = start(GUARD.format(on_fail="flag"))
    with sdk(gw) as client:
        answer = client.messages.with_raw_response.create(
            model="claude", max_tokens=64, messages=[{"role": "user", "content": "forbidden"}])
    assert answer.headers["x-gateway-guard"] == "deny[0] matched"
    assert answer.parse().content[0].type == "text"


def test_guard_ends_anthropic_stream_before_the_denied_text(start):
    gw = start(GUARD.format(on_fail="fallback"))
    body = {"model": "claude", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "please say FORBIDDEN now"}]}
    with gw.stream("POST", "/v1/messages", json=body) as response:
        raw = b"".join(response.iter_bytes()).decode()
    assert response.status_code == 200
    assert "event: error" in raw and "output-guard" in raw
    assert "FORBIDDEN" not in raw.split("event: error")[0]
    assert "message_stop" not in raw


def test_guard_flags_anthropic_stream(start):
    gw = start(GUARD.format(on_fail="flag"))
    body = {"model": "claude", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "forbidden"}]}
    with gw.stream("POST", "/v1/messages", json=body) as response:
        raw = b"".join(response.iter_bytes()).decode()
    assert ": x-gateway-guard: deny[0] matched" in raw
    assert "message_stop" in raw


# -- /v1/responses to an openai target (the fake answers "fake answer from <model>") ---------

ANSWER_GUARD = "  - {{name: output-guard, config: {{deny: ['(?i)fake answer'], on_fail: {on_fail}}}}}"


def test_masked_values_never_reach_openai_in_the_native_responses_body(start, upstream):
    gw = start(PII)
    with gw.openai() as client:
        answer = client.responses.create(model="native", input=f"Write to {EMAIL}")
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"  # the translation, not the native request
    assert EMAIL not in str(sent.body) and "Write to" in str(sent.body)
    assert answer.object == "response"


def test_guard_refuses_native_response(start):
    gw = start(ANSWER_GUARD.format(on_fail="fallback"))
    answer = gw.post("/v1/responses", json={"model": "native", "input": "hi"})
    assert answer.status_code == 503 and "output-guard" in answer.text


def test_guard_flags_native_response(start, upstream):
    gw = start(ANSWER_GUARD.format(on_fail="flag"))
    answer = gw.post("/v1/responses", json={"model": "native", "input": "hi"})
    assert upstream.requests[-1].path == "/v1/responses"
    assert answer.status_code == 200 and answer.headers["x-gateway-guard"] == "deny[0] matched"


def test_guard_ends_native_response_stream(start):
    gw = start(ANSWER_GUARD.format(on_fail="fallback"))
    body = {"model": "native", "input": "hi", "stream": True}
    with gw.stream("POST", "/v1/responses", json=body) as response:
        raw = b"".join(response.iter_bytes()).decode()
    assert "output-guard" in raw and "response.completed" not in raw
