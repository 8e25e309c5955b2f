"""The gateway (in process) in front of the validating fake Anthropic API (and a fake OpenAI upstream
for fallbacks), driven by the official openai client: tool-calling round trips streamed and
not, reasoning, JSON mode, errors and fallbacks from Anthropic to OpenAI."""

from __future__ import annotations

import json

import openai
import pytest

from ..providers.fake_anthropic import API_KEY, FakeAnthropic, Reply

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  claude: {{type: anthropic, base_url: "{anthropic}", api_key: {key}}}
  up: {{type: openai-compatible, base_url: "{openai}", api_key: upstream-secret}}
routes:
  claude: {{target: {{provider: claude, model: claude-test}}}}
  claude-or-gpt:
    fallback:
      on_status: [429, 500, 502, 503, 504, 529, timeout, connection]
      targets:
        - target: {{provider: claude, model: claude-flaky}}
        - target: {{provider: up, model: gpt-backup}}
  long:
    fallback:
      on_status: [context_window]
      targets:
        - target: {{provider: claude, model: claude-small}}
        - target: {{provider: claude, model: claude-large}}
"""
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
ASK = {"role": "user", "content": "Paris"}


@pytest.fixture
def fake():
    server = FakeAnthropic().start()
    yield server
    assert server.rejections == []  # every translated request was valid for the real API
    server.stop()


@pytest.fixture
def client(fake, upstream, gateway_app):
    gw = gateway_app(CONFIG.format(anthropic=fake.base_url, openai=upstream.base_url,
                                       key=API_KEY))
    with gw.openai() as c:
        yield c


def assistant_turn(message) -> dict:
    """The assistant message as a client sends it back on the next turn."""
    return message.model_dump(exclude_none=True, include={"role", "content", "tool_calls"})


def test_tool_round_trip(client, fake):
    """Tool call, tool result, final answer: the fake accepts every translated turn."""
    first = client.chat.completions.create(model="claude", messages=[ASK], tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    second = client.chat.completions.create(model="claude", tools=TOOLS, messages=[
        ASK, assistant_turn(choice.message),
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}])
    assert second.choices[0].message.content == "Tool said: 18C and sunny"
    assert second.choices[0].finish_reason == "stop"
    sent = fake.requests[-1].body["messages"]
    assert sent[-1] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}]}


def stream_turn(client, messages, **kw):
    """Stream one answer; reassemble text, tool calls, finish reason and usage from chunks."""
    stream = client.chat.completions.create(model="claude", messages=messages, tools=TOOLS,
                                            stream=True, stream_options={"include_usage": True},
                                            **kw)
    text, calls, finish, usage, first = "", {}, None, None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        first = first or delta.role
        text += delta.content or ""
        for tc in delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "args": ""})
            entry["args"] += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert first == "assistant"
    return text, calls, finish, usage


def test_streaming_tool_round_trip(client, fake):
    """The same round trip streamed: argument deltas reassemble, the usage chunk comes last."""
    fake.script("claude-test", Reply(content=[
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Lyon"}}],
        stop_reason="tool_use", usage={"input_tokens": 20, "output_tokens": 30,
                                       "cache_read_input_tokens": 100}))
    text, calls, finish, usage = stream_turn(client, [ASK])
    assert (text, finish) == ("Checking both.", "tool_calls")
    assert [(c["id"], json.loads(c["args"])) for c in calls.values()] == [
        ("toolu_a", {"city": "Paris"}), ("toolu_b", {"city": "Lyon"})]
    assert (usage.prompt_tokens, usage.completion_tokens) == (120, 30)
    assert usage.prompt_tokens_details.cached_tokens == 100
    history = [ASK, {"role": "assistant", "content": text, "tool_calls": [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
        for c in calls.values()]},
        {"role": "tool", "tool_call_id": "toolu_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": "21C"}]
    text, calls, finish, usage = stream_turn(client, history)
    assert (text, calls, finish) == ("Tool said: 18C; 21C", {}, "stop")
    assert usage.total_tokens == 18


def test_reasoning_effort_gives_reasoning_content(client, fake):
    """reasoning_effort turns thinking on; the thinking comes back as reasoning_content."""
    reply = client.chat.completions.create(model="claude", messages=[ASK], reasoning_effort="low")
    message = reply.choices[0].message
    assert message.reasoning_content == "Let me think this through."
    assert message.content == "Claude fake answer from claude-test: Paris"
    assert fake.requests[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    stream = client.chat.completions.create(model="claude", messages=[ASK], stream=True,
                                            reasoning_effort="medium")
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                        for c in stream if c.choices)
    assert reasoning == "Let me think this through."


def test_json_schema_answer_is_content(client):
    """response_format json_schema comes back as JSON content that fits the schema."""
    reply = client.chat.completions.create(model="claude", messages=[ASK], response_format={
        "type": "json_schema", "json_schema": {"name": "city_info", "schema": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
    assert json.loads(reply.choices[0].message.content) == {"city": "Paris"}
    assert reply.choices[0].finish_reason == "stop"


def test_fallback_to_openai_keeps_the_tool_conversation(client, fake, upstream):
    """Anthropic overloaded (529): the OpenAI target gets the client's tool turn untouched."""
    history = [ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"}]
    fake.script("claude-flaky", Reply(status=529, error_type="overloaded_error",
                                      error_message="Overloaded"))
    raw = client.chat.completions.with_raw_response.create(
        model="claude-or-gpt", messages=history, tools=TOOLS, tool_choice="auto")
    assert raw.parse().choices[0].message.content == "fake answer from gpt-backup"
    assert (raw.headers["x-gateway-target"], raw.headers["x-gateway-attempts"]) == (
        "up/gpt-backup", "2")
    sent = upstream.requests[-1].body
    assert sent["messages"] == history and sent["tools"] == TOOLS
    assert sent["tool_choice"] == "auto"
    assert fake.requests[-1].body["messages"][-1]["content"][0]["type"] == "tool_result"


def test_stream_fallback_on_error_before_first_chunk(client, fake, upstream):
    """An error event in place of message_start still falls back, streaming included."""
    fake.script("claude-flaky", Reply(error_after_events=0))
    stream = client.chat.completions.with_raw_response.create(
        model="claude-or-gpt", messages=[ASK], tools=TOOLS, stream=True)
    assert stream.headers["x-gateway-target"] == "up/gpt-backup"
    text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    assert text == "fake answer from gpt-backup"
    assert upstream.requests[-1].body["tools"] == TOOLS


def test_context_window_error_falls_back(client, fake):
    """'prompt is too long' is class context_window: a route can fall back on it."""
    fake.script("claude-small", Reply(status=400, error_type="invalid_request_error",
                                      error_message="prompt is too long: 250000 tokens > 200000 maximum"))
    reply = client.chat.completions.create(model="long", messages=[ASK])
    assert reply.choices[0].message.content == "Claude fake answer from claude-large: Paris"


def test_rate_limit_keeps_retry_after(client, fake):
    """Anthropic's 429 reaches the client as 429 with Retry-After and the message kept."""
    fake.script("claude-test", Reply(status=429, error_type="rate_limit_error",
                                     error_message="rate limited", headers={"retry-after": "7"}))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="claude", messages=[ASK])
    assert info.value.response.headers["retry-after"] == "7"
    assert "rate limited" in info.value.body["message"]


def test_bad_request_is_returned_as_is(client, fake):
    """Anthropic's own 400 comes back as a 400 in OpenAI's shape, with its message."""
    fake.script("claude-test", Reply(status=400, error_type="invalid_request_error",
                                     error_message="messages.0: something is off"))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude", messages=[ASK])
    assert info.value.body["message"] == "messages.0: something is off"
    assert info.value.body["type"] == "invalid_request_error"


def test_error_mid_stream_ends_with_sse_error(client, fake):
    """An error event after the first chunks ends the client's stream with an error."""
    fake.script("claude-test", Reply(error_after_events=4))
    with pytest.raises(openai.APIError) as info:
        for _ in client.chat.completions.create(model="claude", messages=[ASK], stream=True):
            pass
    assert "stream interrupted: Overloaded" in str(info.value)


def test_embeddings_on_an_anthropic_route_is_400(client, fake):
    """Anthropic has no embeddings: a clear 400, and nothing is sent upstream."""
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="claude", input="hello")
    assert "claude/claude-test cannot serve embeddings" in info.value.body["message"]
    assert fake.requests == []
