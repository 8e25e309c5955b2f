"""The gateway (in process) in front of the Gemini, Cohere and Bedrock fakes (which validate every
request as the real APIs do, SigV4 included), driven by the official openai client."""

from __future__ import annotations

import base64
import json

import openai
import pytest

from ..providers.fake_bedrock import FakeBedrock
from ..providers.fake_cohere import FakeCohere
from ..providers.fake_gemini import FakeGemini
from ..providers.fake_server import Script

BEDROCK_MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  gem: {{type: gemini, base_url: "{gemini}", api_key: gemini-test-key}}
  co: {{type: cohere, base_url: "{cohere}", api_key: cohere-test-key}}
  br:
    type: bedrock
    base_url: "{bedrock}"
    region: us-west-2
    aws_access_key_id: ${{TEST_AWS_KEY}}
    aws_secret_access_key: ${{TEST_AWS_SECRET}}
  br-bad: {{type: bedrock, base_url: "{bedrock}", region: us-west-2, aws_access_key_id: AKIDFAKEBEDROCK,
           aws_secret_access_key: not-the-secret}}
routes:
  gemini: {{target: {{provider: gem, model: gemini-2.0-flash}}}}
  cohere: {{target: {{provider: co, model: command-r-plus}}}}
  bedrock: {{target: {{provider: br, model: "{bedrock_model}"}}}}
  bedrock-bad: {{target: {{provider: br-bad, model: "{bedrock_model}"}}}}
  gemini-embed: {{target: {{provider: gem, model: text-embedding-004}}}}
  gemini-image: {{target: {{provider: gem, model: gemini-2.5-flash-image}}}}
  imagen: {{target: {{provider: gem, model: imagen-4.0-generate-001}}}}
  cohere-embed: {{target: {{provider: co, model: embed-english-v3.0}}}}
  chain:
    fallback:
      targets:
        - target: {{provider: gem, model: gemini-chain}}
        - target: {{provider: co, model: cohere-chain}}
        - target: {{provider: br, model: bedrock-chain}}
  big:
    fallback:
      on_status: [context_window]
      targets:
        - target: {{provider: gem, model: gemini-2.0-flash}}
        - target: {{provider: co, model: command-r-plus}}
"""
SECRETS = ["gemini-test-key", "cohere-test-key", "fake/secret+key", "not-the-secret"]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}
PROVIDERS = ["gemini", "cohere", "bedrock"]
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()


@pytest.fixture(scope="module")
def fakes():
    servers = {"gemini": FakeGemini(max_input_chars=4000).start(),
               "cohere": FakeCohere(max_input_chars=40000).start(), "bedrock": FakeBedrock().start()}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def gw(fakes, gateway_app):
    for fake in fakes.values():
        fake.rejections.clear()
    config = CONFIG.format(gemini=fakes["gemini"].base_url, cohere=fakes["cohere"].base_url,
                           bedrock=fakes["bedrock"].base_url, bedrock_model=BEDROCK_MODEL)
    proc = gateway_app(config, env={"TEST_AWS_KEY": "AKIDFAKEBEDROCK", "TEST_AWS_SECRET": "fake/secret+key"})
    proc.clients = []
    yield proc
    for c in proc.clients:
        c.close()


def client(gw) -> openai.OpenAI:
    c = gw.openai()
    gw.clients.append(c)
    return c


def user(text):
    return {"role": "user", "content": text}


def streamed_tool_calls(stream) -> tuple[list[dict], str | None]:
    """Reassemble tool calls from stream deltas the way OpenAI clients do (by index)."""
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        for d in choice.delta.tool_calls or []:
            call = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = d.id or call["id"]
            call["name"] += (d.function.name or "") if d.function else ""
            call["arguments"] += (d.function.arguments or "") if d.function else ""
        finish = choice.finish_reason or finish
    return [calls[i] for i in sorted(calls)], finish


@pytest.mark.parametrize("route", PROVIDERS)
def test_chat(gw, fakes, route):
    """A plain chat with a system prompt answers through each native adapter."""
    raw = client(gw).chat.completions.with_raw_response.create(
        model=route, messages=[{"role": "system", "content": "be brief"}, user("hello there")])
    reply = raw.parse()
    assert reply.choices[0].message.content == f"{route} says: hello there"
    assert reply.choices[0].finish_reason == "stop" and reply.usage.total_tokens > 0
    assert raw.headers["x-gateway-target"].split("/")[0] in ("gem", "co", "br")
    assert fakes[route].rejections == []


@pytest.mark.parametrize("route", PROVIDERS)
def test_stream_with_usage(gw, fakes, route):
    """A streamed answer reassembles to the text and ends with a usage chunk."""
    stream = client(gw).chat.completions.create(
        model=route, messages=[user("stream this please")], stream=True,
        stream_options={"include_usage": True})
    text, usage, finishes = "", None, []
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finishes += [chunk.choices[0].finish_reason] if chunk.choices[0].finish_reason else []
        if chunk.usage:
            usage = chunk.usage
    assert text == f"{route} says: stream this please"
    assert finishes == ["stop"] and usage is not None and usage.completion_tokens > 0


@pytest.mark.parametrize("route", PROVIDERS)
def test_tool_loop(gw, fakes, route):
    """Parallel tool calls come back with JSON arguments; their results are accepted and answered."""
    c = client(gw)
    first = c.chat.completions.create(model=route, messages=[user("weather and time?")], tools=[WEATHER, TIME])
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert [(t.function.name, json.loads(t.function.arguments)) for t in message.tool_calls] == [
        ("get_weather", {"city": "city-1"}), ("get_time", {"tz": "tz-1"})]
    results = [{"role": "tool", "tool_call_id": t.id, "content": f"result {i}"}
               for i, t in enumerate(message.tool_calls)]
    second = c.chat.completions.create(
        model=route, tools=[WEATHER, TIME],
        messages=[user("weather and time?"), message.model_dump(exclude_none=True), *results])
    assert "result 0" in second.choices[0].message.content and "result 1" in second.choices[0].message.content
    assert fakes[route].rejections == []


@pytest.mark.parametrize("route", PROVIDERS)
def test_streamed_tool_calls(gw, fakes, route):
    """Streamed tool calls reassemble by index into whole calls with valid JSON arguments."""
    stream = client(gw).chat.completions.create(
        model=route, messages=[user("weather?")], tools=[WEATHER, TIME], stream=True)
    calls, finish = streamed_tool_calls(stream)
    assert finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("get_weather", {"city": "city-1"}), ("get_time", {"tz": "tz-1"})]
    assert all(c["id"] for c in calls)


@pytest.mark.parametrize("route", PROVIDERS)
def test_image_input(gw, fakes, route):
    """An image data URL in a user message is accepted by each provider's validation."""
    reply = client(gw).chat.completions.create(model=route, messages=[{"role": "user", "content": [
        {"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": PNG}}]}])
    assert reply.choices[0].message.content == f"{route} says: describe"
    assert fakes[route].rejections == []


@pytest.mark.parametrize("route, dims", [("gemini-embed", 8), ("cohere-embed", 6)])
def test_embeddings(gw, route, dims):
    """Embeddings (the client asks for base64 by default) come back as float vectors."""
    c = client(gw)
    result = c.embeddings.create(model=route, input=["alpha", "beta"])
    vectors = [d.embedding for d in result.data]
    assert len(vectors) == 2 and all(len(v) == dims for v in vectors) and vectors[0] != vectors[1]
    floats = c.embeddings.create(model=route, input="alpha", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vectors[0], rel=1e-5)


def test_fallback_gemini_cohere_bedrock_with_tools(gw, fakes):
    """Gemini 503 and Cohere 503 fall back to Bedrock's tool calls, whose results Cohere then takes."""
    c = client(gw)
    fakes["gemini"].script("gemini-chain", 503, 503, 503)
    fakes["cohere"].script("cohere-chain", 503)
    raw = c.chat.completions.with_raw_response.create(
        model="chain", messages=[user("weather?")], tools=[WEATHER])
    first = raw.parse()
    assert raw.headers["x-gateway-target"] == "br/bedrock-chain" and raw.headers["x-gateway-attempts"] == "3"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "city-1"}
    history = [user("weather?"), first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    raw = c.chat.completions.with_raw_response.create(model="chain", messages=history, tools=[WEATHER])
    assert raw.headers["x-gateway-target"] == "co/cohere-chain"
    assert raw.parse().choices[0].message.content == "cohere got tool results: sunny"
    stream = c.chat.completions.create(model="chain", messages=history, tools=[WEATHER], stream=True)
    text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert text == "cohere got tool results: sunny"
    assert all(not f.rejections for f in fakes.values())


def test_context_window_fallback(gw, fakes):
    """Gemini's context error falls back on context_window, else returns Google's 400 as it is."""
    long = "word " * 1000
    raw = client(gw).chat.completions.with_raw_response.create(model="big", messages=[user(long)])
    assert raw.headers["x-gateway-target"] == "co/command-r-plus"
    with pytest.raises(openai.BadRequestError) as info:
        client(gw).chat.completions.create(model="gemini", messages=[user(long)])
    assert "exceeds the maximum number of tokens" in info.value.body["message"]
    assert info.value.body["code"] == "context_window"  # the error class, as the gateway reports it


def test_rate_limit_gives_retry_after(gw, fakes):
    """Gemini's 429 with RetryInfo reaches the client as 429 with Retry-After."""
    fakes["gemini"].script("gemini-2.0-flash", Script(status=429))
    with pytest.raises(openai.RateLimitError) as info:
        client(gw).chat.completions.create(model="gemini", messages=[user("x")])
    assert info.value.response.headers["Retry-After"] == "7"


def test_bad_signature_is_a_403(gw):
    """Bedrock refusing a wrongly signed request is passed to the client as a 403 in OpenAI's shape."""
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(gw).chat.completions.create(model="bedrock-bad", messages=[user("x")])
    assert "signature we calculated does not match" in info.value.body["message"]


@pytest.mark.parametrize("route, script", [
    ("bedrock", Script(stream_error_after=2)), ("gemini", Script(stream_error_after=2)),
    ("cohere", Script(stream_error_after=3))])
def test_error_mid_stream(gw, fakes, route, script):
    """A provider error after the first chunks ends the stream with an SSE error event."""
    model = {"bedrock": BEDROCK_MODEL, "gemini": "gemini-2.0-flash", "cohere": "command-r-plus"}[route]
    fakes[route].script(model, script)
    with pytest.raises(openai.APIError) as info:
        with client(gw).chat.completions.create(model=route, messages=[user("a b c d")], stream=True) as stream:
            for _ in stream:
                pass
    assert "stream interrupted" in str(info.value)


def test_no_secret_in_logs(gw):
    """After successes and failures on every provider, no credential appears in the log."""
    c = client(gw)
    for route in PROVIDERS + ["bedrock-bad"]:
        try:
            c.chat.completions.create(model=route, messages=[user("x")])
        except openai.APIError:
            pass
    log = gw.log()
    assert '"event": "request"' in log or '"event":"request"' in log
    assert not [s for s in SECRETS if s in log]


@pytest.mark.parametrize("route, count", [("gemini-image", 1), ("imagen", 2)])
def test_gemini_images(gw, fakes, route, count):
    """Gemini image models and Imagen answer POST /v1/images/generations with b64_json."""
    result = client(gw).images.generate(model=route, prompt="a lighthouse at dusk", n=count)
    assert len(result.data) == count
    assert base64.b64decode(result.data[0].b64_json).startswith(b"\x89PNG")
    assert fakes["gemini"].rejections == []
