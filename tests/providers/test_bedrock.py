"""Bedrock Converse: golden translations both ways (pure functions), and the adapter against
the fake (which verifies SigV4 signatures)."""

from __future__ import annotations

import base64
from types import MappingProxyType

import orjson
import pytest

from gateway.errors import UpstreamError, classify_status
from gateway.providers.base import ClientPool, ProviderSpec, Timeouts, UpstreamRequest
from gateway.providers.bedrock import (
    JSON_TOOL, BedrockProvider, from_bedrock, parse_error, stream_chunks, to_bedrock, tool_id,
)

from .eventstream_encode import encode
from .fake_bedrock import FakeBedrock, validate
from .fake_server import Script

T = Timeouts(connect=2, first_byte=5, idle=5, total=5)
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
CREDS = {"region": "us-west-2", "aws_access_key_id": "AKIDFAKEBEDROCK", "aws_secret_access_key": "fake/secret+key"}


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


async def frames(*items, split: int = 5):
    """Event frames as ConverseStream sends them, cut into small pieces."""
    raw = b"".join(encode({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                          orjson.dumps(data)) if isinstance(kind, str) else encode(kind, orjson.dumps(data))
                   for kind, data in items)
    for i in range(0, len(raw), split):
        yield raw[i:i + split]


# -- OpenAI -> Bedrock ------------------------------------------------------------------------


def test_plain_chat_and_system():
    """System messages become system blocks; user text a text block; no empty configs."""
    body, json_tool = to_bedrock(chat({"role": "system", "content": "be brief"}, user("hello")))
    assert body == {"messages": [{"role": "user", "content": [{"text": "hello"}]}], "system": [{"text": "be brief"}]}
    assert json_tool is None
    validate(body)


def test_multi_turn_parallel_tool_calls_and_results():
    """Tool calls become toolUse blocks; results merge into the next user turn as toolResult."""
    body, _ = to_bedrock(chat(
        user("weather?"),
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "25C"}]},
        user("and tomorrow?"), tools=[WEATHER]))
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "weather?"}]},
        {"role": "assistant", "content": [
            {"text": "Looking."},
            {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {"city": "Rome"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "21C"}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "25C"}]}},
            {"text": "and tomorrow?"}]}]
    assert body["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "Weather in a city",
        "inputSchema": {"json": WEATHER["function"]["parameters"]}}}]}
    validate(body)


def test_foreign_tool_ids_are_mapped_stably():
    """Ids Bedrock would refuse (another provider's) map to the same safe id in call and result."""
    odd = "call_x__thought__c2ln+/=="
    body, _ = to_bedrock(chat(user("x"), {"role": "assistant", "tool_calls": [
        {"id": odd, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": odd, "content": "ok"}, tools=[WEATHER]))
    use = body["messages"][1]["content"][0]["toolUse"]["toolUseId"]
    assert use == tool_id(odd) == body["messages"][2]["content"][0]["toolResult"]["toolUseId"]
    assert tool_id("call_ok-1") == "call_ok-1"
    validate(body)


def test_tool_history_without_tools_declares_them():
    """A tool-use history sent without tools still gets the toolConfig Converse requires."""
    body, _ = to_bedrock(chat(user("x"), {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "found"}))
    assert body["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "lookup", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}
    validate(body)


def test_tool_choice():
    """required -> any, a named function -> tool, none -> no toolConfig when no tool history."""
    def config(choice):
        return to_bedrock(chat(user("x"), tools=[WEATHER], tool_choice=choice))[0].get("toolConfig")
    assert config("required")["toolChoice"] == {"any": {}}
    assert config({"type": "function", "function": {"name": "get_weather"}})["toolChoice"] == {"tool": {"name": "get_weather"}}
    assert "toolChoice" not in config("auto") and config("none") is None


def test_images():
    """Data-URL images become image blocks with base64 bytes; plain links are a clear 400."""
    body, _ = to_bedrock(chat({"role": "user", "content": [
        {"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": PNG}}]}))
    assert body["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PNG.split(",")[1]}}}
    validate(body)
    with pytest.raises(UpstreamError) as info:
        to_bedrock(chat({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}))
    assert info.value.status == 400


def test_s3_images_only_when_the_provider_allows_them():
    """Bedrock reads an s3:// image with the gateway's AWS credentials: refused (400) unless
    the provider says s3_images: true."""
    body = chat({"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "s3://operator-bucket/private/cat.png"}}]})
    with pytest.raises(UpstreamError) as refused:
        to_bedrock(body)
    assert refused.value.status == 400 and "s3_images: true" in refused.value.message
    allowed, _ = to_bedrock(body, s3_images=True)
    assert allowed["messages"][0]["content"][0] == {"image": {"format": "png", "source": {
        "s3Location": {"uri": "s3://operator-bucket/private/cat.png"}}}}


async def test_a_provider_without_s3_images_sends_nothing(fake, pool):
    body = chat({"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "s3://operator-bucket/cat.png"}}]})
    with pytest.raises(UpstreamError) as refused:
        await make(fake, pool).send(UpstreamRequest("chat", body, False, T))
    assert refused.value.status == 400 and fake.requests == []
    answer = await make(fake, pool, s3_images=True).send(UpstreamRequest("chat", body, False, T))
    assert answer.status == 200 and len(fake.requests) == 1


def test_inference_config_and_stop():
    """max_tokens, temperature, top_p and stop map to inferenceConfig."""
    body, _ = to_bedrock(chat(user("x"), max_tokens=64, temperature=0.5, top_p=0.9, stop=["END", "STOP"]))
    assert body["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END", "STOP"]}
    validate(body)


def test_json_mode_uses_a_forced_tool():
    """JSON mode is a forced schema tool without tools, a system instruction with them."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body, json_tool = to_bedrock(chat(user("x"), response_format={
        "type": "json_schema", "json_schema": {"name": "r", "schema": schema}}))
    assert json_tool == JSON_TOOL
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": JSON_TOOL}}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": schema}
    validate(body)
    with_tools, json_tool = to_bedrock(chat(user("x"), tools=[WEATHER], response_format={"type": "json_object"}))
    assert json_tool is None and "JSON" in with_tools["system"][-1]["text"]


# -- Bedrock -> OpenAI ------------------------------------------------------------------------


def test_text_answer_with_usage():
    """Text blocks join; reasoning becomes reasoning_content; usage with cached tokens."""
    out = from_bedrock({"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s"}}}, {"text": "Hi"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 3, "totalTokens": 17, "cacheReadInputTokens": 4}}, "m")
    assert out["choices"] == [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
        "role": "assistant", "content": "Hi", "reasoning_content": "hmm"}}]
    assert out["usage"] == {"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17,
                            "prompt_tokens_details": {"cached_tokens": 4}}


def test_tool_use_answer_and_json_tool():
    """toolUse blocks become tool_calls; the forced JSON tool's input becomes the content."""
    out = from_bedrock({"output": {"message": {"content": [
        {"toolUse": {"toolUseId": "tu1", "name": "get_weather", "input": {"city": "Paris"}}}]}},
        "stopReason": "tool_use"}, "m")
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["choices"][0]["message"]["tool_calls"] == [
        {"id": "tu1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    forced = from_bedrock({"output": {"message": {"content": [
        {"toolUse": {"toolUseId": "tu1", "name": JSON_TOOL, "input": {"a": 1}}}]}}, "stopReason": "tool_use"}, "m", JSON_TOOL)
    assert forced["choices"][0]["message"] == {"role": "assistant", "content": '{"a":1}'}
    assert forced["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("reason, expected", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter")])
def test_every_stop_reason(reason, expected):
    """Each Converse stopReason maps to OpenAI's finish_reason."""
    out = from_bedrock({"output": {"message": {"content": [{"text": "x"}]}}, "stopReason": reason}, "m")
    assert out["choices"][0]["finish_reason"] == expected


# -- streams ----------------------------------------------------------------------------------


async def test_text_stream_with_usage():
    """Frames cut anywhere decode into content deltas, the finish chunk, usage and [DONE]."""
    out = await collect(stream_chunks(frames(
        ("messageStart", {"role": "assistant", "p": "abc"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "max_tokens"}),
        ("metadata", {"usage": {"inputTokens": 2, "outputTokens": 2, "totalTokens": 4}, "metrics": {}})), "m", True))
    assert [c["choices"][0]["delta"] for c in out[:3]] == [{"role": "assistant", "content": ""},
                                                           {"content": "Hel"}, {"content": "lo"}]
    assert out[3]["choices"][0]["finish_reason"] == "length"
    assert out[4]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert out[5] == "[DONE]"


async def test_tool_stream_argument_deltas():
    """contentBlockStart(toolUse) starts a tool call; toolUse input deltas are argument deltas."""
    out = await collect(stream_chunks(frames(
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "plan"}}}),
        ("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu1", "name": "a"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"x":'}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "1}"}}}),
        ("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tu2", "name": "b"}}}),
        ("messageStop", {"stopReason": "tool_use"})), "m", False))
    deltas = [c["choices"][0]["delta"] for c in out[:-1]]
    assert deltas[1] == {"reasoning_content": "plan"}
    assert deltas[2] == {"tool_calls": [{"index": 0, "id": "tu1", "type": "function", "function": {"name": "a", "arguments": ""}}]}
    assert [d["tool_calls"][0]["function"]["arguments"] for d in deltas[3:5]] == ['{"x":', "1}"]
    assert deltas[5]["tool_calls"][0]["index"] == 1
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls" and out[-1] == "[DONE]"


async def test_exception_frame_mid_stream_raises():
    """An exception frame after some output raises a classified UpstreamError from the iterator."""
    seen = []
    with pytest.raises(UpstreamError) as info:
        async for c in stream_chunks(frames(
                ("messageStart", {"role": "assistant"}),
                ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "a"}}),
                ({":message-type": "exception", ":exception-type": "throttlingException",
                  ":content-type": "application/json"}, {"message": "slow down"})), "m", False):
            seen.append(c)
    assert len(seen) == 2
    assert (info.value.status, info.value.error_class) == (429, "rate_limit") and "slow down" in info.value.message


async def test_corrupt_or_cut_stream_raises():
    """A bad CRC or a stream cut mid-frame is an error, never a silent truncation."""
    good = encode({":event-type": "messageStart", ":message-type": "event"}, b'{"role":"assistant"}')

    async def raw(data):
        yield data

    with pytest.raises(UpstreamError, match="unreadable"):
        await collect(stream_chunks(raw(good[:-1] + bytes([good[-1] ^ 1])), "m", False))
    with pytest.raises(UpstreamError, match="cut in the middle"):
        await collect(stream_chunks(raw(good + good[:10]), "m", False))


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status, message, error_class", [
    (400, "Input is too long for requested model.", "context_window"),
    (400, "prompt is too long: 210000 tokens > 200000 maximum", "context_window"),
    (400, "The request was blocked by a guardrail.", "content_policy"),
    (429, "Too many requests, please wait before trying again.", "rate_limit"),
    (400, "Malformed input request", "client"), (503, "Bedrock is unable to process your request.", "server")])
def test_error_parsing(status, message, error_class):
    """Bedrock's {"message"} bodies keep the message and classify right."""
    parsed, code = parse_error(orjson.dumps({"message": message}), status)
    assert parsed == message and classify_status(status, code) == error_class


# -- against the fake (SigV4 verified) ----------------------------------------------------------


@pytest.fixture
def fake():
    with FakeBedrock() as server:
        yield server


def make(fake, pool, **options) -> BedrockProvider:
    return BedrockProvider(ProviderSpec("b", "bedrock", fake.base_url, None, MappingProxyType({}), 8,
                                        MappingProxyType({**CREDS, **options})), pool)


@pytest.fixture
async def pool():
    p = ClientPool()
    yield p
    await p.close()


async def test_signed_request_to_converse(fake, pool):
    """The request is SigV4-signed and goes to /model/<id with %3A>/converse."""
    out = orjson.loads((await make(fake, pool).send(UpstreamRequest("chat", chat(user("hi")), False, T))).body)
    assert out["choices"][0]["message"]["content"] == "bedrock says: hi"
    assert fake.requests[-1].raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    assert fake.requests[-1].headers["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDFAKEBEDROCK/") and fake.rejections == []


async def test_wrong_secret_is_refused(fake, pool):
    """A signature made with the wrong secret gets Bedrock's 403, a client error."""
    with pytest.raises(UpstreamError) as info:
        await make(fake, pool, aws_secret_access_key="wrong").send(UpstreamRequest("chat", chat(user("hi")), False, T))
    assert (info.value.status, info.value.error_class) == (403, "client")
    assert "signature we calculated does not match" in info.value.message


async def test_session_token_and_env_credentials(monkeypatch):
    """Credentials from AWS_* variables, with a session token, sign acceptably."""
    with FakeBedrock(session_token="tok/en==") as fake:
        for key, value in {"AWS_ACCESS_KEY_ID": "AKIDFAKEBEDROCK", "AWS_SECRET_ACCESS_KEY": "fake/secret+key",
                           "AWS_SESSION_TOKEN": "tok/en=="}.items():
            monkeypatch.setenv(key, value)
        pool = ClientPool()
        try:
            provider = BedrockProvider(ProviderSpec("b", "bedrock", fake.base_url, None, MappingProxyType({}), 8,
                                                    MappingProxyType({"region": "us-west-2"})), pool)
            await provider.send(UpstreamRequest("chat", chat(user("hi")), False, T))
        finally:
            await pool.close()
        assert fake.requests[-1].headers["X-Amz-Security-Token"] == "tok/en==" and fake.rejections == []


async def test_tool_round_trip_through_fake(fake, pool):
    """Parallel tool calls, then results sent back, are accepted by the validating fake."""
    provider = make(fake, pool)
    tools = [WEATHER, {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}]
    first = orjson.loads((await provider.send(UpstreamRequest("chat", chat(user("q"), tools=tools), False, T))).body)
    message = first["choices"][0]["message"]
    assert len(message["tool_calls"]) == 2 and first["choices"][0]["finish_reason"] == "tool_calls"
    results = [{"role": "tool", "tool_call_id": c["id"], "content": f"r{i}"} for i, c in enumerate(message["tool_calls"])]
    second = orjson.loads((await provider.send(UpstreamRequest("chat", chat(user("q"), message, *results, tools=tools), False, T))).body)
    assert second["choices"][0]["message"]["content"] == "bedrock got tool results: r0; r1"
    assert fake.rejections == []


async def test_json_mode_through_fake(fake, pool):
    """JSON mode answers with the forced tool's input as content."""
    out = orjson.loads((await make(fake, pool).send(UpstreamRequest(
        "chat", chat(user("hi"), response_format={"type": "json_object"}), False, T))).body)
    assert orjson.loads(out["choices"][0]["message"]["content"]) == {"answer": "hi"}
    assert out["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("script, status, error_class", [
    (Script(status=429), 429, "rate_limit"), (Script(status=503), 503, "server"), (Script(status=500), 500, "server")])
async def test_scripted_errors(fake, pool, script, status, error_class):
    """HTTP errors become classified UpstreamErrors with an OpenAI-shaped body."""
    fake.script(MODEL, script)
    with pytest.raises(UpstreamError) as info:
        await make(fake, pool).send(UpstreamRequest("chat", chat(user("x")), False, T))
    assert (info.value.status, info.value.error_class) == (status, error_class)


async def test_context_error_through_fake(fake, pool):
    """'Input is too long for requested model.' is classified context_window."""
    with pytest.raises(UpstreamError) as info:
        await make(fake, pool).send(UpstreamRequest("chat", chat(user("x" * 30000)), False, T))
    assert info.value.error_class == "context_window"


async def test_stream_through_fake(fake, pool):
    """Fake ConverseStream frames become chunks; exception frames raise mid-stream or from send."""
    provider = make(fake, pool)
    out = await collect((await provider.send(UpstreamRequest(
        "chat", chat(user("go on"), stream_options={"include_usage": True}), True, T))).stream)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in out[:-1] if c["choices"]) == "bedrock says: go on"
    assert fake.requests[-1].path.endswith("/converse-stream") and out[-2]["usage"]["total_tokens"] > 0
    fake.script(MODEL, Script(stream_error_after=2))
    response = await provider.send(UpstreamRequest("chat", chat(user("a b c")), True, T))
    with pytest.raises(UpstreamError) as info:
        await collect(response.stream)
    assert info.value.error_class == "server" and "modelStreamErrorException" in info.value.message
    fake.script(MODEL, Script(stream_error_after=0, stream_error="throttlingException"))
    with pytest.raises(UpstreamError) as info:
        await provider.send(UpstreamRequest("chat", chat(user("x")), True, T))
    assert info.value.error_class == "rate_limit"


def test_validate_options():
    """A region is required and checked; a key id needs its secret."""
    assert BedrockProvider.validate_options("bedrock", {"region": "eu-west-1"}) == []
    assert BedrockProvider.validate_options("bedrock", {"region": "nowhere"})
    assert BedrockProvider.validate_options("bedrock", {"region": "us-east-1", "aws_access_key_id": "A"})


async def test_embeddings_are_refused(fake, pool):
    """Converse serves chat only: embeddings are a clear 400."""
    with pytest.raises(UpstreamError) as info:
        await make(fake, pool).send(UpstreamRequest("embeddings", {"model": "m", "input": "x"}, False, T))
    assert info.value.status == 400


def test_s3_images_on_another_type_is_a_config_error(tmp_path):
    from gateway.config.compiler import compile_bytes
    from gateway.errors import ConfigErrors

    text = ("version: 1\nproviders:\n  claude: {type: anthropic, api_key: x, s3_images: true}\n"
            "routes:\n  r: {target: {provider: claude, model: m}}\n")
    with pytest.raises(ConfigErrors) as caught:
        compile_bytes(text.encode(), str(tmp_path / "gateway.yaml"), version=1)
    assert "gateway.yaml:3:" in str(caught.value) and "s3_images is for type bedrock" in str(
        caught.value)
