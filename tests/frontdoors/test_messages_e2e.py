"""POST /v1/messages through the real app (in process), driven by the official anthropic SDK:
to the validating fake Anthropic API (passed through without loss), to a fake OpenAI upstream
(translated), streamed and not, with keys (x-api-key and bearer), usage, fallbacks and errors
in Anthropic's shape; and /v1/messages/count_tokens."""

from __future__ import annotations

import hashlib
import json

import anthropic
import httpx2
import pytest

from ..fake_upstream import Behaviour
from ..inprocess_gateway import poll
from ..providers.fake_anthropic import API_KEY, Reply

RAW = "sk-gw-doors-test"
CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  claude: {{type: anthropic, base_url: "{anthropic}", api_key: {key}}}
  up: {{type: openai-compatible, base_url: "{openai}", api_key: upstream-secret}}
routes:
  claude: {{target: {{provider: claude, model: claude-test}}}}
  gpt: {{target: {{provider: up, model: gpt-test}}}}
  claude-or-gpt:
    fallback:
      on_status: [429, 500, 502, 503, 504, 529, timeout, connection]
      targets:
        - target: {{provider: claude, model: claude-flaky}}
        - target: {{provider: up, model: gpt-backup}}
keys:
  doors:
    key_sha256: {digest}
    routes: [claude, gpt, claude-or-gpt]
  narrow:
    key_sha256: {narrow}
    routes: [gpt]
"""
ASK = [{"role": "user", "content": "Paris"}]
WEATHER = {"name": "get_weather", "description": "Current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


def sha(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@pytest.fixture
def gw(fake, upstream, gateway_app):
    return gateway_app(CONFIG.format(anthropic=fake.base_url, openai=upstream.base_url,
                                     key=API_KEY, digest=sha(RAW), narrow=sha("narrow-key")))


def client(gw, api_key: str | None = RAW, auth_token: str | None = None) -> anthropic.Anthropic:
    """The official SDK, sending through the gateway's in-process transport."""
    http = httpx2.Client(transport=gw.client._transport, base_url=gw.base_url)
    return anthropic.Anthropic(base_url=gw.base_url, api_key=api_key, auth_token=auth_token,
                               max_retries=0, http_client=http)


def test_anthropic_target_gets_the_body_as_sent(gw, fake):
    """cache_control, system blocks, thinking blocks with their signatures, tool_use and
    tool_result reach Anthropic exactly as the client sent them (only the model is the
    target's), and the answer comes back as Anthropic wrote it."""
    thinking = {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig-abc"}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?",
                                      "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [thinking, {"type": "tool_use", "id": "toolu_1",
                                                     "name": "get_weather",
                                                     "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "18C and sunny"}]},
    ]
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    sent = {"max_tokens": 2048, "system": system, "messages": messages, "tools": [WEATHER],
            "thinking": {"type": "enabled", "budget_tokens": 1024}}
    with client(gw) as c:
        answer = c.messages.with_raw_response.create(model="claude", **sent)
    message = answer.parse()
    assert fake.requests[-1].body == {"model": "claude-test", **sent}
    assert message.content[0].type == "thinking" and message.content[0].signature == "sig-fake"
    assert message.content[1].text == "Tool said: 18C and sunny"
    assert message.model == "claude-test" and message.usage.input_tokens == 12
    assert answer.headers["x-gateway-target"] == "claude/claude-test"
    assert answer.headers["x-gateway-route"] == "claude"


def test_anthropic_stream_is_relayed_as_sent(gw, fake):
    """A streamed answer from Anthropic reaches the SDK event for event (thinking and
    signature deltas, tool input JSON), and the client's anthropic-beta header reaches
    Anthropic while its key does not."""
    with client(gw) as c:
        with c.messages.stream(model="claude", max_tokens=2048, messages=ASK, tools=[WEATHER],
                               thinking={"type": "enabled", "budget_tokens": 1024},
                               extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"}
                               ) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "signature" in kinds and "input_json" in kinds
    assert [b.type for b in final.content] == ["thinking", "tool_use"]
    assert final.content[0].signature == "sig-fake"
    assert final.content[1].input == {"city": "Paris"} and final.stop_reason == "tool_use"
    headers = fake.requests[-1].headers
    assert headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert headers["x-api-key"] == API_KEY  # the provider's key, never the client's


def test_openai_target_translated(gw, upstream):
    """To an OpenAI-compatible target the request is translated to chat and the answer back
    into an Anthropic message, usage included."""
    with client(gw) as c:
        message = c.messages.create(model="gpt", max_tokens=100, system="Be brief.",
                                    messages=ASK, stop_sequences=["END"],
                                    extra_body={"temperature": 0.5})
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"] == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Paris"}]
    assert sent.body["stop"] == ["END"] and sent.body["max_tokens"] == 100
    assert sent.body["temperature"] == 0.5
    assert message.content[0].text == "fake answer from gpt-test"
    assert message.stop_reason == "end_turn" and message.model == "gpt"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 4)


def test_openai_target_streamed(gw, upstream):
    """A translated stream is Anthropic's event sequence: the SDK assembles the text and
    reads the usage from message_delta."""
    with client(gw) as c:
        with c.messages.stream(model="gpt", max_tokens=100, messages=ASK) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert text == "fake answer from gpt-test"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}


def test_openai_tool_calls_become_tool_use(gw, upstream):
    """An OpenAI tool call comes back as a tool_use block, and the tool_result of the next
    turn goes to OpenAI as a tool message."""
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
    upstream.script("gpt-test", Behaviour(body=json.dumps({
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-test",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})))
    with client(gw) as c:
        first = c.messages.create(model="gpt", max_tokens=100, messages=ASK, tools=[WEATHER],
                                  tool_choice={"type": "any"})
        (use,) = first.content
        assert (use.type, use.id, use.name, use.input) == ("tool_use", "call_1", "get_weather",
                                                           {"city": "Paris"})
        assert first.stop_reason == "tool_use"
        c.messages.create(model="gpt", max_tokens=100, tools=[WEATHER], messages=[
            *ASK, {"role": "assistant", "content": [use.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                          "content": "18C"}]}])
    assert upstream.requests[0].body["tool_choice"] == "required"
    assert upstream.requests[0].body["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    sent = upstream.requests[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_1"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "18C"}


def test_fallback_from_anthropic_to_openai(gw, fake, upstream):
    """An overloaded Anthropic target (529) falls back to OpenAI within the same request,
    streamed too: the client gets one well-formed Anthropic stream."""
    fake.script("claude-flaky", Reply(status=529, error_type="overloaded_error"),
                Reply(status=529, error_type="overloaded_error"))
    with client(gw) as c:
        whole = c.messages.with_raw_response.create(model="claude-or-gpt", max_tokens=50,
                                                    messages=ASK)
        with c.messages.stream(model="claude-or-gpt", max_tokens=50, messages=ASK) as stream:
            text = "".join(stream.text_stream)
    assert whole.parse().content[0].text == "fake answer from gpt-backup"
    assert whole.headers["x-gateway-target"] == "up/gpt-backup"
    assert whole.headers["x-gateway-attempts"] == "2"
    assert text == "fake answer from gpt-backup"


def test_error_in_a_stream_before_message_start_falls_back(gw, fake):
    """An error event in place of message_start is a failed attempt (fallback acts)."""
    fake.script("claude-flaky", Reply(error_after_events=0))
    with client(gw) as c:
        with c.messages.stream(model="claude-or-gpt", max_tokens=50, messages=ASK) as stream:
            assert "".join(stream.text_stream) == "fake answer from gpt-backup"


def test_error_after_the_first_byte_is_an_error_event(gw, fake):
    """A stream from Anthropic that fails after its first events ends with Anthropic's own
    error event, which the SDK raises."""
    fake.script("claude-test", Reply(error_after_events=3))
    with client(gw) as c, pytest.raises(anthropic.APIStatusError) as raised:
        with c.messages.stream(model="claude", max_tokens=50, messages=ASK) as stream:
            for _ in stream:
                pass
    assert "Overloaded" in str(raised.value)


def test_translated_stream_cut_off_ends_with_an_error_event(gw, upstream):
    """An OpenAI stream cut mid-way ends the translated stream with an Anthropic error event."""
    upstream.script("gpt-test", Behaviour(fail_after_chunks=2))
    with client(gw) as c, pytest.raises(anthropic.APIStatusError) as raised:
        with c.messages.stream(model="gpt", max_tokens=50, messages=ASK) as stream:
            for _ in stream:
                pass
    assert "stream interrupted" in str(raised.value)


def test_bearer_and_x_api_key_both_authenticate(gw):
    """The virtual key is accepted as x-api-key (the SDK's api_key) and as a bearer token
    (its auth_token); a missing or wrong key is a 401 in Anthropic's shape."""
    with client(gw, api_key=None, auth_token=RAW) as c:
        assert c.messages.create(model="gpt", max_tokens=10, messages=ASK).content
    with client(gw) as c:
        assert c.messages.create(model="gpt", max_tokens=10, messages=ASK).content
    for headers in ({}, {"x-api-key": "wrong"}, {"Authorization": "Bearer wrong"}):
        answer = gw.post("/v1/messages", headers=headers,
                         json={"model": "gpt", "max_tokens": 10, "messages": ASK})
        assert answer.status_code == 401
        assert answer.json()["type"] == "error"
        assert answer.json()["error"]["type"] == "authentication_error"


def test_errors_in_anthropic_shape(gw):
    """400 (bad body), 403 (route the key may not use), 404 (unknown model): Anthropic's
    error shape, which the SDK turns into its own exception classes."""
    with client(gw) as c:
        with pytest.raises(anthropic.BadRequestError) as bad:
            c.messages.create(model="gpt", messages=ASK, max_tokens=0)
        assert bad.value.body["error"]["type"] == "invalid_request_error"
        assert "max_tokens" in bad.value.body["error"]["message"]
        with pytest.raises(anthropic.NotFoundError) as unknown:
            c.messages.create(model="nope", messages=ASK, max_tokens=5)
        assert "nope" in unknown.value.body["error"]["message"]
    with client(gw, api_key="narrow-key") as c, pytest.raises(anthropic.PermissionDeniedError):
        c.messages.create(model="claude", messages=ASK, max_tokens=5)


def test_upstream_client_error_keeps_anthropics_words(gw, fake):
    """A request Anthropic refuses (400) reaches the client with Anthropic's message."""
    fake.script("claude-test", Reply(status=400, error_type="invalid_request_error",
                                     error_message="messages: roles must alternate"))
    with client(gw) as c, pytest.raises(anthropic.BadRequestError) as raised:
        c.messages.create(model="claude", max_tokens=10, messages=ASK)
    assert raised.value.body["error"]["message"] == "messages: roles must alternate"


def test_native_usage_is_recorded(gw):
    """Usage of native Anthropic answers, whole and streamed, is counted like any other
    (input tokens from message_start, output from message_delta)."""
    with client(gw) as c:
        c.messages.create(model="claude", max_tokens=10, messages=ASK)
        with c.messages.stream(model="claude", max_tokens=10, messages=ASK) as stream:
            stream.until_done()
    rows = poll(lambda: gw.get("/admin/usage?period=all").json()["usage"],
                lambda rows: sum(r["requests"] for r in rows) == 2, what="usage not written")
    (row,) = rows
    assert (row["route"], row["key"], row["target"]) == ("claude", "doors", "claude/claude-test")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (24, 12)


def test_count_tokens_exact_for_anthropic_estimated_otherwise(gw, fake):
    """count_tokens asks Anthropic when the route's target is Anthropic, and estimates
    otherwise; the x-gateway-token-count header says which."""
    fake.count = 42
    with client(gw) as c:
        exact = c.messages.with_raw_response.count_tokens(model="claude", messages=ASK)
        estimate = c.messages.with_raw_response.count_tokens(
            model="gpt", messages=[{"role": "user", "content": "word " * 40}])
    assert exact.parse().input_tokens == 42
    assert exact.headers["x-gateway-token-count"] == "exact"
    assert fake.requests[-1].path == "/v1/messages/count_tokens"
    assert fake.requests[-1].body == {"model": "claude-test", "messages": ASK}
    assert estimate.headers["x-gateway-token-count"] == "estimate"
    assert 40 <= estimate.parse().input_tokens <= 60
