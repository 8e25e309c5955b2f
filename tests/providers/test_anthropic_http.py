"""The anthropic adapter over real HTTP against the fake Anthropic API, which refuses
malformed requests like the real one: headers, whole answers, streams, errors of each class."""

from __future__ import annotations

from types import MappingProxyType

import orjson
import pytest

from gateway.errors import UpstreamError
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import ClientPool, ProviderSpec, Timeouts, UpstreamRequest

from .fake_anthropic import API_KEY, FakeAnthropic, Invalid, Reply, validate

TIMEOUTS = Timeouts(connect=2, first_byte=5, idle=5, total=5)
USER = {"role": "user", "content": "Hello"}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
WEATHER_TOOL = {"name": "get_weather", "description": "Weather in a city", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}



@pytest.fixture
def fake():
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture
async def make(fake):
    pool = ClientPool()

    def build(base_url: str | None = None, key: str = API_KEY, **options) -> AnthropicProvider:
        spec = ProviderSpec("claude", "anthropic", base_url or fake.base_url, key,
                            MappingProxyType({}), 10, MappingProxyType(options))
        return AnthropicProvider(spec, pool)

    yield build
    await pool.close()


def chat(stream: bool = False, endpoint: str = "chat", **body) -> UpstreamRequest:
    return UpstreamRequest(endpoint, {"model": "claude-x", "messages": [USER], **body}, stream,
                           TIMEOUTS)


async def collect(stream) -> list[dict]:
    raw = b"".join([part async for part in stream])
    assert raw.endswith(b"data: [DONE]\n\n")
    return [orjson.loads(line[6:]) for line in raw.split(b"\n\n")
            if line.startswith(b"data: {")]


def test_fake_refuses_malformed_requests():
    """The fake's validation can fail: it refuses what the real API refuses."""
    bad = [
        {"model": "m", "messages": [USER]},
        {"model": "m", "max_tokens": 5, "messages": [USER, USER]},
        {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
        {"model": "m", "max_tokens": 5, "messages": [USER], "n": 1},
        {"model": "m", "max_tokens": 5, "messages": [
            USER, {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": "no result"}], "tools": [WEATHER_TOOL]},
    ]
    for body in bad:
        with pytest.raises(Invalid):
            validate(body)


async def test_request_headers_url_and_version(fake, make):
    """POST /v1/messages with x-api-key and anthropic-version (default, or api_version)."""
    await make().send(chat())
    await make(base_url=fake.base_url + "/v1/", api_version="2099-01-01").send(chat())
    first, second = fake.requests
    assert first.path == second.path == "/v1/messages"
    assert first.headers["x-api-key"] == API_KEY
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert second.headers["anthropic-version"] == "2099-01-01"
    assert fake.rejections == []


async def test_whole_answer_over_http(fake, make):
    """A whole answer comes back as an OpenAI chat.completion."""
    response = await make().send(chat())
    data = orjson.loads(response.body)
    assert data["choices"][0]["message"]["content"] == "Claude fake answer from claude-x: Hello"
    assert data["usage"]["total_tokens"] == 18


async def test_stream_of_parallel_tool_calls_over_http(fake, make):
    """A streamed answer with two tool calls arrives as OpenAI chunks, arguments whole."""
    fake.script("claude-x", Reply(content=[
        {"type": "tool_use", "id": "t_a", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "t_b", "name": "get_weather", "input": {"city": "Rome"}}],
        stop_reason="tool_use"))
    response = await make().send(chat(stream=True, tools=[WEATHER],
                                      stream_options={"include_usage": True}))
    chunks = await collect(response.stream)
    args: dict[int, str] = {}
    for c in chunks:
        for tc in (c["choices"][0]["delta"].get("tool_calls") or []) if c["choices"] else []:
            args[tc["index"]] = args.get(tc["index"], "") + tc["function"]["arguments"]
    assert {i: orjson.loads(a) for i, a in args.items()} == {0: {"city": "Oslo"}, 1: {"city": "Rome"}}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 6


async def test_error_event_before_message_start_fails_the_attempt(fake, make):
    """An error event first is raised by send itself, so fallback can still act."""
    fake.script("claude-x", Reply(error_after_events=0))
    with pytest.raises(UpstreamError) as info:
        await make().send(chat(stream=True))
    assert (info.value.status, info.value.error_class) == (529, "server")


async def test_error_event_mid_stream_raises_from_the_iterator(fake, make):
    """An error event after the first chunks ends the iterator with UpstreamError."""
    fake.script("claude-x", Reply(error_after_events=3))
    response = await make().send(chat(stream=True))
    seen = []
    with pytest.raises(UpstreamError) as info:
        async for part in response.stream:
            seen.append(part)
    assert seen and info.value.error_class == "server" and info.value.message == "Overloaded"


@pytest.mark.parametrize("reply, status, error_class, retry_after", [
    (Reply(status=429, error_type="rate_limit_error", error_message="Number of request tokens "
           "has exceeded your per-minute rate limit", headers={"retry-after": "7"}),
     429, "rate_limit", 7.0),
    (Reply(status=529, error_type="overloaded_error", error_message="Overloaded"),
     529, "server", None),
    (Reply(status=500, error_type="api_error", error_message="Internal server error"),
     500, "server", None),
    (Reply(status=400, error_type="invalid_request_error",
           error_message="prompt is too long: 250000 tokens > 200000 maximum"),
     400, "context_window", None),
    (Reply(status=400, error_type="invalid_request_error",
           error_message="Output blocked by content filtering policy"), 400, "content_policy", None),
    (Reply(status=403, error_type="permission_error", error_message="not allowed"),
     403, "client", None),
])
async def test_error_classes_over_http(fake, make, reply, status, error_class, retry_after):
    """Each error is classified, keeps Anthropic's message, and has OpenAI's shape."""
    fake.script("claude-x", reply)
    with pytest.raises(UpstreamError) as info:
        await make().send(chat())
    err = info.value
    assert (err.status, err.error_class, err.retry_after) == (status, error_class, retry_after)
    assert err.message == reply.error_message
    assert orjson.loads(err.body)["error"]["message"] == reply.error_message


async def test_bad_key_is_a_client_error(fake, make):
    """A wrong key is Anthropic's 401 authentication_error, class client."""
    with pytest.raises(UpstreamError) as info:
        await make(key="wrong").send(chat())
    assert (info.value.status, info.value.error_class, info.value.message) == (
        401, "client", "invalid x-api-key")


@pytest.mark.parametrize("endpoint", ["embeddings", "completions"])
async def test_unsupported_endpoints_are_400(fake, make, endpoint):
    """Anthropic has no embeddings or legacy completions here: a clear 400, nothing sent."""
    with pytest.raises(UpstreamError) as info:
        await make().send(UpstreamRequest(endpoint, {"model": "m", "input": "x"}, False, TIMEOUTS))
    assert (info.value.status, info.value.error_class) == (400, "client")
    assert endpoint in orjson.loads(info.value.body)["error"]["message"]
    assert fake.requests == []


async def test_an_answer_that_is_not_a_message_object_is_an_upstream_error(fake, make):
    """A 200 whose JSON is not an object (a list) is a server-class 502 that retry and
    fallback act on, not an exception escaping the adapter."""
    fake.script("claude-x", Reply(raw_body=b"[1, 2]"))
    with pytest.raises(UpstreamError) as info:
        await make().send(chat())
    assert (info.value.status, info.value.error_class) == (502, "server")
    assert orjson.loads(info.value.body)["error"]["code"] == "bad_upstream_response"


async def test_untranslatable_request_is_400_with_param(fake, make):
    """A request Anthropic cannot express is a 400 naming the parameter; nothing is sent."""
    with pytest.raises(UpstreamError) as info:
        await make().send(chat(n=3))
    error = orjson.loads(info.value.body)["error"]
    assert (info.value.status, error["param"]) == (400, "n") and fake.requests == []


async def test_health_check_lists_models(fake, make):
    """The health check asks GET /v1/models with the key: None when fine, else why not."""
    assert await make().check_health(2) is None
    assert await make(key="wrong").check_health(2) == "GET /v1/models answered 401"
