"""Cohere v2: golden translations both ways (pure functions), and the adapter against the fake."""

from __future__ import annotations

import base64
import struct
from types import MappingProxyType

import orjson
import pytest

from gateway.errors import UpstreamError, classify_status
from gateway.providers.base import ClientPool, ProviderSpec, Timeouts, UpstreamRequest
from gateway.providers.cohere import CohereProvider, from_cohere, parse_error, stream_chunks, to_cohere

from .fake_cohere import FakeCohere, validate_chat
from .fake_server import Script

T = Timeouts(connect=2, first_byte=5, idle=5, total=5)
MODEL = "command-r-plus"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()


def chat(*messages, **extra) -> dict:
    return {"model": MODEL, "messages": list(messages), **extra}


def user(text):
    return {"role": "user", "content": text}


async def collect(chunks) -> list:
    out = []
    async for raw in chunks:
        for line in raw.decode().split("\n\n"):
            if line.startswith("data: "):
                out.append(line[6:] if line[6:] == "[DONE]" else orjson.loads(line[6:]))
    return out


async def events(*items: tuple[str, dict]):
    for kind, data in items:
        yield f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n"


# -- OpenAI -> Cohere -------------------------------------------------------------------------


def test_plain_chat_and_system():
    """Messages keep their roles; system text stays a system message; stream flag is explicit."""
    body = to_cohere(chat({"role": "system", "content": "be brief"}, user("hello")))
    assert body == {"model": MODEL, "stream": False, "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]}
    assert to_cohere(chat(user("x")), stream=True)["stream"] is True
    validate_chat(body)


def test_multi_turn_parallel_tool_calls_and_results():
    """Tool calls keep their plan, results their tool_call_id; tools pass as JSON Schema."""
    body = to_cohere(chat(
        user("weather and time?"),
        {"role": "assistant", "content": "I will look both up.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": '{"tz":"CET"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "noon"}]},
        {"role": "assistant", "content": "Sunny at noon."}, user("thanks"),
        tools=[WEATHER, TIME]))
    assert body["messages"][1:5] == [
        {"role": "assistant", "tool_plan": "I will look both up.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": '{"tz":"CET"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"},
        {"role": "assistant", "content": "Sunny at noon."}]
    assert body["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city", "parameters": WEATHER["function"]["parameters"]}}
    assert "tool_choice" not in body
    validate_chat(body)


def test_tool_choice():
    """required and a named function become REQUIRED (over that one tool); none becomes NONE."""
    assert to_cohere(chat(user("x"), tools=[WEATHER], tool_choice="required"))["tool_choice"] == "REQUIRED"
    assert to_cohere(chat(user("x"), tools=[WEATHER], tool_choice="none"))["tool_choice"] == "NONE"
    named = to_cohere(chat(user("x"), tools=[WEATHER, TIME],
                           tool_choice={"type": "function", "function": {"name": "get_time"}}))
    assert named["tool_choice"] == "REQUIRED" and [t["function"]["name"] for t in named["tools"]] == ["get_time"]


def test_images_and_reasoning_content_round_trip():
    """Image parts pass as image_url blocks; an assistant's reasoning_content goes back as tool_plan."""
    body = to_cohere(chat({"role": "user", "content": [{"type": "text", "text": "what?"},
                                                       {"type": "image_url", "image_url": {"url": PNG}}]},
                          {"role": "assistant", "content": None, "reasoning_content": "plan",
                           "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
                          {"role": "tool", "tool_call_id": "c1", "content": "ok"}, tools=[WEATHER]))
    assert body["messages"][0]["content"] == [{"type": "text", "text": "what?"},
                                              {"type": "image_url", "image_url": {"url": PNG}}]
    assert body["messages"][1]["tool_plan"] == "plan"
    validate_chat(body)


def test_parameters_json_mode_and_stop():
    """Sampling, limits, stop sequences (top_p clamped to Cohere's range) and JSON modes map."""
    body = to_cohere(chat(user("x"), temperature=0.3, top_p=1.0, max_tokens=20, stop="END", seed=3,
                          frequency_penalty=0.1, presence_penalty=0.2, response_format={"type": "json_object"}))
    assert {k: v for k, v in body.items() if k not in ("model", "messages", "stream")} == {
        "p": 0.99, "temperature": 0.3, "seed": 3, "frequency_penalty": 0.1, "presence_penalty": 0.2,
        "max_tokens": 20, "stop_sequences": ["END"], "response_format": {"type": "json_object"}}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = to_cohere(chat(user("x"), response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}))
    assert fmt["response_format"] == {"type": "json_object", "json_schema": schema}
    validate_chat(body)


def test_n_above_one_is_refused():
    """Cohere returns one answer: n > 1 is a clear 400."""
    with pytest.raises(UpstreamError) as info:
        to_cohere(chat(user("x"), n=2))
    assert info.value.status == 400 and info.value.error_class == "client"


# -- Cohere -> OpenAI -------------------------------------------------------------------------


def test_text_answer_with_usage():
    """Text blocks join into content; thinking becomes reasoning_content; usage from tokens."""
    out = from_cohere({"id": "abc", "finish_reason": "COMPLETE", "message": {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Hello"}]},
        "usage": {"billed_units": {"input_tokens": 3, "output_tokens": 2},
                  "tokens": {"input_tokens": 13, "output_tokens": 2}}}, "m")
    assert out["id"] == "chatcmpl-abc"
    assert out["choices"] == [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
        "role": "assistant", "content": "Hello", "reasoning_content": "hmm"}}]
    assert out["usage"] == {"prompt_tokens": 13, "completion_tokens": 2, "total_tokens": 15}


def test_tool_call_answer():
    """tool_calls pass through with their ids; the plan is reasoning_content; finish tool_calls."""
    out = from_cohere({"finish_reason": "TOOL_CALL", "message": {"role": "assistant", "tool_plan": "call it",
        "tool_calls": [{"id": "get_weather_x", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}}, "m")
    message = out["choices"][0]["message"]
    assert out["choices"][0]["finish_reason"] == "tool_calls" and message["content"] is None
    assert message["reasoning_content"] == "call it"
    assert message["tool_calls"] == [{"id": "get_weather_x", "type": "function",
                                      "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]


@pytest.mark.parametrize("reason, expected", [
    ("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"),
    ("TOOL_CALL", "tool_calls"), ("ERROR_TOXIC", "content_filter"), ("ERROR_LIMIT", "length")])
def test_every_finish_reason(reason, expected):
    """Each Cohere finish_reason maps to OpenAI's."""
    out = from_cohere({"finish_reason": reason, "message": {"content": [{"type": "text", "text": "x"}]}}, "m")
    assert out["choices"][0]["finish_reason"] == expected


@pytest.mark.parametrize("reason", ["ERROR", "TIMEOUT"])
def test_failed_generation_is_an_error(reason):
    """A generation that ended in ERROR or TIMEOUT is a server-class failure, not an answer."""
    with pytest.raises(UpstreamError) as info:
        from_cohere({"finish_reason": reason, "message": {"content": []}}, "m")
    assert info.value.error_class == "server"


# -- streams ----------------------------------------------------------------------------------


async def test_text_stream_with_usage():
    """content-delta events become content deltas; message-end the finish and usage chunks."""
    out = await collect(stream_chunks(events(
        ("message-start", {"id": "s1", "delta": {"message": {"role": "assistant"}}}),
        ("content-start", {"index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
        ("content-delta", {"index": 0, "delta": {"message": {"content": {"text": "Hi"}}}}),
        ("content-delta", {"index": 0, "delta": {"message": {"content": {"text": " you"}}}}),
        ("content-end", {"index": 0}),
        ("message-end", {"delta": {"finish_reason": "MAX_TOKENS",
                                   "usage": {"tokens": {"input_tokens": 4, "output_tokens": 2}}}})), "m", True))
    assert [c["choices"][0]["delta"] for c in out[:3]] == [{"role": "assistant", "content": ""},
                                                           {"content": "Hi"}, {"content": " you"}]
    assert out[3]["choices"][0]["finish_reason"] == "length"
    assert out[4]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert out[5] == "[DONE]" and out[0]["id"] == "chatcmpl-s1"


async def test_tool_call_stream_argument_deltas():
    """tool-plan-delta is reasoning; tool-call-start/delta become indexed tool-call deltas."""
    call = {"id": "t0", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    out = await collect(stream_chunks(events(
        ("message-start", {"id": "s"}),
        ("tool-plan-delta", {"delta": {"message": {"tool_plan": "I will"}}}),
        ("tool-call-start", {"index": 0, "delta": {"message": {"tool_calls": call}}}),
        ("tool-call-delta", {"index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": '{"ci'}}}}}),
        ("tool-call-delta", {"index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": 'ty":"P"}'}}}}}),
        ("tool-call-end", {"index": 0}),
        ("tool-call-start", {"index": 1, "delta": {"message": {"tool_calls": {**call, "id": "t1"}}}}),
        ("tool-call-end", {"index": 1}),
        ("message-end", {"delta": {"finish_reason": "TOOL_CALL"}})), "m", True))
    deltas = [c["choices"][0]["delta"] for c in out if c != "[DONE]" and c["choices"]]
    assert deltas[1] == {"reasoning_content": "I will"}
    assert deltas[2]["tool_calls"] == [{"index": 0, "id": "t0", "type": "function",
                                        "function": {"name": "get_weather", "arguments": ""}}]
    assert [d["tool_calls"][0]["function"]["arguments"] for d in deltas[3:5]] == ['{"ci', 'ty":"P"}']
    assert deltas[5]["tool_calls"][0]["index"] == 1
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls"  # no usage given: no usage chunk


async def test_stream_error_finish_raises():
    """message-end with finish_reason ERROR raises UpstreamError from the iterator."""
    seen = []
    with pytest.raises(UpstreamError) as info:
        async for c in stream_chunks(events(("message-start", {"id": "s"}),
                                            ("content-delta", {"delta": {"message": {"content": {"text": "a"}}}}),
                                            ("message-end", {"delta": {"finish_reason": "ERROR"}})), "m", False):
            seen.append(c)
    assert len(seen) == 2 and info.value.error_class == "server"


async def test_stream_without_message_end_raises():
    """A stream cut before message-end is an error, not a silent truncation."""
    with pytest.raises(UpstreamError, match="before message-end"):
        await collect(stream_chunks(events(("message-start", {"id": "s"})), "m", False))


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status, message, error_class", [
    (400, "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 5000.",
     "context_window"),
    (429, "You are using a Trial key, which is limited to 10 API calls / minute.", "rate_limit"),
    (400, "invalid request: p must be between 0.01 and 0.99", "client"),
    (401, "invalid api token", "client"), (500, "internal server error", "server")])
def test_error_parsing(status, message, error_class):
    """Cohere's {"message"} bodies keep the message and classify right."""
    parsed, code = parse_error(orjson.dumps({"id": "x", "message": message}), status)
    assert parsed == message and classify_status(status, code) == error_class


# -- against the fake -------------------------------------------------------------------------


@pytest.fixture
def fake():
    with FakeCohere() as server:
        yield server


@pytest.fixture
async def provider(fake):
    pool = ClientPool()
    yield CohereProvider(ProviderSpec("c", "cohere", fake.base_url, "cohere-test-key",
                                      MappingProxyType({}), 8, MappingProxyType({})), pool)
    await pool.close()


async def test_bearer_auth_and_path(provider, fake):
    """Chat goes to /v2/chat with the bearer key."""
    out = orjson.loads((await provider.send(UpstreamRequest("chat", chat(user("hi")), False, T))).body)
    assert out["choices"][0]["message"]["content"] == "cohere says: hi"
    assert fake.requests[-1].path == "/v2/chat"
    assert fake.requests[-1].headers["Authorization"] == "Bearer cohere-test-key"


async def test_parallel_tool_round_trip(provider, fake):
    """Parallel tool calls answered with results are accepted upstream and answered."""
    first = orjson.loads((await provider.send(UpstreamRequest(
        "chat", chat(user("both?"), tools=[WEATHER, TIME]), False, T))).body)
    message = first["choices"][0]["message"]
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather", "get_time"]
    results = [{"role": "tool", "tool_call_id": c["id"], "content": f"r{i}"} for i, c in enumerate(message["tool_calls"])]
    second = orjson.loads((await provider.send(UpstreamRequest(
        "chat", chat(user("both?"), message, *results, tools=[WEATHER, TIME]), False, T))).body)
    assert second["choices"][0]["message"]["content"] == "cohere got tool results: r0; r1"
    assert fake.rejections == []


async def test_missing_tool_result_would_fail(provider, fake):
    """The fake refuses a tool call without its result, as Cohere does: the 400 reaches us."""
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    with pytest.raises(UpstreamError) as info:
        await provider.send(UpstreamRequest("chat", chat(
            user("x"), {"role": "assistant", "content": None, "tool_calls": [call]}, user("y"), tools=[WEATHER]), False, T))
    assert info.value.status == 400 and "need tool results" in info.value.message


@pytest.mark.parametrize("script, status, error_class", [
    (Script(status=429), 429, "rate_limit"), (Script(status=503), 503, "server")])
async def test_scripted_errors(provider, fake, script, status, error_class):
    """Upstream errors become classified UpstreamErrors with an OpenAI-shaped body."""
    fake.script(MODEL, script)
    with pytest.raises(UpstreamError) as info:
        await provider.send(UpstreamRequest("chat", chat(user("x")), False, T))
    assert (info.value.status, info.value.error_class) == (status, error_class)
    assert orjson.loads(info.value.body)["error"]["message"] == info.value.message


async def test_context_error_through_fake(provider):
    """Cohere's 'too many tokens' is classified context_window."""
    with pytest.raises(UpstreamError) as info:
        await provider.send(UpstreamRequest("chat", chat(user("x" * 30000)), False, T))
    assert info.value.error_class == "context_window"


async def test_stream_through_fake_with_error(provider, fake):
    """A stream reassembles; a stream ending in ERROR raises from the iterator."""
    out = await collect((await provider.send(UpstreamRequest(
        "chat", chat(user("go"), stream=True, stream_options={"include_usage": True}), True, T))).stream)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in out[:-1] if c["choices"]) == "cohere says: go"
    assert out[-2]["usage"]["prompt_tokens"] > 0
    fake.script(MODEL, Script(stream_error_after=3))
    response = await provider.send(UpstreamRequest("chat", chat(user("a b c")), True, T))
    with pytest.raises(UpstreamError):
        await collect(response.stream)


async def test_embeddings(provider, fake):
    """v2 embed with input_type search_document and float types; base64 packing on request."""
    body = {"model": "embed-english-v3.0", "input": "hello world", "encoding_format": "base64"}
    out = orjson.loads((await provider.send(UpstreamRequest("embeddings", body, False, T))).body)
    assert fake.requests[-1].path == "/v2/embed"
    assert fake.requests[-1].body == {"model": "embed-english-v3.0", "texts": ["hello world"],
                                      "input_type": "search_document", "embedding_types": ["float"]}
    vector = struct.unpack("<6f", base64.b64decode(out["data"][0]["embedding"]))
    assert len(vector) == 6 and out["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


async def test_token_input_is_refused(provider):
    """Token-array inputs cannot be sent to Cohere: a clear 400."""
    with pytest.raises(UpstreamError) as info:
        await provider.send(UpstreamRequest("embeddings", {"model": "e", "input": [[1, 2]]}, False, T))
    assert info.value.status == 400 and info.value.error_class == "client"
