"""Gemini: golden translations both ways (pure functions), and the adapter against the fake."""

from __future__ import annotations

import base64
import struct
from types import MappingProxyType

import orjson
import pytest

from gateway.errors import UpstreamError, classify_status
from gateway.providers.base import ClientPool, ProviderSpec, Timeouts, UpstreamRequest
from gateway.providers.gemini import (
    SIGNATURE, GeminiProvider, from_gemini, parse_error, schema, stream_chunks, to_gemini,
)

from .fake_gemini import FakeGemini, validate
from .fake_server import Script

T = Timeouts(connect=2, first_byte=5, idle=5, total=5)
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()


def chat(*messages, **extra) -> dict:
    return {"model": "gemini-2.0-flash", "messages": list(messages), **extra}


def user(text):
    return {"role": "user", "content": text}


async def collect(chunks) -> list[dict | str]:
    out = []
    async for raw in chunks:
        for line in raw.decode().split("\n\n"):
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


async def sse(*events: dict):
    for e in events:
        yield b"data: " + orjson.dumps(e) + b"\r\n\r\n"


# -- OpenAI -> Gemini -------------------------------------------------------------------------


def test_plain_chat():
    """A user message becomes one user content with a text part; nothing else is sent."""
    assert to_gemini(chat(user("hello"))) == {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}


def test_system_prompts_become_system_instruction():
    """system and developer messages go to systemInstruction, in order, not into contents."""
    body = to_gemini(chat({"role": "system", "content": "be brief"},
                          {"role": "developer", "content": [{"type": "text", "text": "in French"}]},
                          user("hi")))
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}, {"text": "in French"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


def test_multi_turn_parallel_tool_calls_and_results():
    """Tool calls become functionCall parts, results named functionResponse parts in one turn."""
    sig_id = f"call_1{SIGNATURE}c2lnbmF0dXJl"
    body = to_gemini(chat(
        user("weather in Paris and Rome?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": sig_id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}}]},
        {"role": "tool", "tool_call_id": sig_id, "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        {"role": "assistant", "content": "Sunny, noon."},
        user("thanks"),
        tools=[WEATHER]))
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "weather in Paris and Rome?"}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJl"},
            {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
            {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}}]},
        {"role": "model", "parts": [{"text": "Sunny, noon."}]},
        {"role": "user", "parts": [{"text": "thanks"}]},
    ]
    validate(body)  # what the real API accepts


def test_tools_and_tool_choice():
    """Tools become functionDeclarations with a Gemini Schema; tool_choice maps to toolConfig."""
    body = to_gemini(chat(user("x"), tools=[WEATHER]))
    assert body["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    for choice, config in [("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}),
                           ({"type": "function", "function": {"name": "get_weather"}},
                            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]})]:
        assert to_gemini(chat(user("x"), tools=[WEATHER], tool_choice=choice))["toolConfig"] == \
            {"functionCallingConfig": config}


def test_tool_without_parameters_sends_none():
    """A tool with an empty object schema sends no parameters (Gemini refuses empty OBJECTs)."""
    tool = {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
    body = to_gemini(chat(user("x"), tools=[tool]))
    assert body["tools"][0]["functionDeclarations"] == [{"name": "now"}]
    validate(body)


def test_unknown_tool_call_id_is_a_400():
    """A tool result whose id matches no earlier call is refused before sending."""
    with pytest.raises(UpstreamError) as info:
        to_gemini(chat(user("x"), {"role": "tool", "tool_call_id": "nope", "content": "1"}))
    assert (info.value.status, info.value.error_class) == (400, "client")
    assert orjson.loads(info.value.body)["error"]["param"] == "messages[1].tool_call_id"


def test_tool_message_may_name_its_function():
    """Without an earlier call to match, a tool message's own name is used."""
    body = to_gemini(chat(user("x"), {"role": "tool", "tool_call_id": "elsewhere", "name": "f", "content": "1"}))
    assert body["contents"] == [{"role": "user", "parts": [
        {"text": "x"}, {"functionResponse": {"name": "f", "response": {"content": "1"}}}]}]


def test_images():
    """Data URLs become inlineData; other URLs become fileData with a guessed type."""
    body = to_gemini(chat({"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?x=1"}}]}))
    assert body["contents"][0]["parts"] == [
        {"text": "what is this?"},
        {"inlineData": {"mimeType": "image/png", "data": PNG.split(",", 1)[1]}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?x=1"}}]
    validate(body)


@pytest.mark.parametrize("url", ["https://generativelanguage.googleapis.com/v1beta/files/abc123",
                                 "https://storage.googleapis.com/operator-bucket/cat.png",
                                 "gs://operator-bucket/cat.png", "files/abc123"])
def test_files_of_the_account_only_when_the_provider_allows_them(url):
    """Google reads a Files API URI or a gs:// object with the gateway's key, whoever uploaded
    it: refused (400) unless the provider says file_uris: true. Public links pass."""
    body = chat({"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]})
    with pytest.raises(UpstreamError) as refused:
        to_gemini(body)
    assert refused.value.status == 400 and "file_uris: true" in refused.value.message
    assert to_gemini(body, file_uris=True)["contents"][0]["parts"][0]["fileData"]["fileUri"] == url


def test_file_uris_on_another_type_is_a_config_error(tmp_path):
    from gateway.config.compiler import compile_bytes
    from gateway.errors import ConfigErrors

    text = ("version: 1\nproviders:\n  oa: {type: openai, api_key: x, file_uris: true}\n"
            "routes:\n  r: {target: {provider: oa, model: m}}\n")
    with pytest.raises(ConfigErrors) as caught:
        compile_bytes(text.encode(), str(tmp_path / "gateway.yaml"), version=1)
    assert "gateway.yaml:3:" in str(caught.value) and "file_uris is for type gemini" in str(
        caught.value)


def test_json_modes():
    """json_object sets the JSON mime type; json_schema adds a translated responseSchema."""
    assert to_gemini(chat(user("x"), response_format={"type": "json_object"}))["generationConfig"] == \
        {"responseMimeType": "application/json"}
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "strict": True, "schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "properties": {"name": {"type": ["string", "null"]}, "kind": {"const": "cat"},
                       "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}}},
        "required": ["name"], "additionalProperties": False,
        "$defs": {"tag": {"type": "string", "minLength": 1}}}}}
    body = to_gemini(chat(user("x"), response_format=fmt))
    assert body["generationConfig"] == {"responseMimeType": "application/json", "responseSchema": {
        "type": "OBJECT", "required": ["name"], "properties": {
            "name": {"nullable": True, "type": "STRING"}, "kind": {"enum": ["cat"]},
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "minLength": 1}}}}}
    validate(body)


def test_recursive_schema_is_refused():
    """A self-referencing schema cannot be inlined: a clear 400."""
    with pytest.raises(UpstreamError) as info:
        schema({"$ref": "#/$defs/n", "$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}}, "p")
    assert info.value.status == 400 and "too deep" in info.value.message


def test_generation_config_mapping():
    """Sampling, limits, stop sequences, n and reasoning effort map to generationConfig."""
    body = to_gemini(chat(user("x"), temperature=0.2, top_p=0.9, max_tokens=50, stop="END", n=2,
                          seed=7, presence_penalty=0.1, frequency_penalty=0.3, reasoning_effort="low"))
    assert body["generationConfig"] == {
        "temperature": 0.2, "topP": 0.9, "seed": 7, "presencePenalty": 0.1, "frequencyPenalty": 0.3,
        "maxOutputTokens": 50, "stopSequences": ["END"], "candidateCount": 2,
        "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}
    assert to_gemini(chat(user("x"), max_completion_tokens=9, stop=["a", "b"]))["generationConfig"] == \
        {"maxOutputTokens": 9, "stopSequences": ["a", "b"]}
    validate(body)


# -- Gemini -> OpenAI -------------------------------------------------------------------------


def test_text_answer_with_usage():
    """Text parts join into content; usageMetadata becomes usage with cached and reasoning tokens."""
    out = from_gemini({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "Let me see", "thought": True}, {"text": "Hello"}, {"text": " there"}]},
        "finishReason": "STOP", "index": 0}], "responseId": "r1",
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 6,
                          "cachedContentTokenCount": 3, "totalTokenCount": 20}}, "gemini-x")
    assert out["id"] == "chatcmpl-r1" and out["object"] == "chat.completion" and out["model"] == "gemini-x"
    assert out["choices"] == [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
        "role": "assistant", "content": "Hello there", "reasoning_content": "Let me see"}}]
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20,
                            "prompt_tokens_details": {"cached_tokens": 3},
                            "completion_tokens_details": {"reasoning_tokens": 6}}


def test_function_calls_answer():
    """functionCall parts become tool_calls (signature kept in the id); finish is tool_calls."""
    out = from_gemini({"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": "SIG"},
        {"functionCall": {"name": "b", "args": {}, "id": "given"}}]}, "finishReason": "STOP"}]}, "m")
    message = out["choices"][0]["message"]
    assert out["choices"][0]["finish_reason"] == "tool_calls" and message["content"] is None
    first, second = message["tool_calls"]
    assert first["function"] == {"name": "a", "arguments": '{"x":1}'} and first["id"].endswith(SIGNATURE + "SIG")
    assert second == {"id": "given", "type": "function", "function": {"name": "b", "arguments": "{}"}}


@pytest.mark.parametrize("reason, expected", [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"), ("BLOCKLIST", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"), ("OTHER", "stop"),
    ("MALFORMED_FUNCTION_CALL", "stop")])
def test_every_finish_reason(reason, expected):
    """Each Gemini finishReason maps to OpenAI's finish_reason."""
    out = from_gemini({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}, "m")
    assert out["choices"][0]["finish_reason"] == expected


def test_prompt_blocked():
    """A prompt blocked by promptFeedback answers empty with finish_reason content_filter."""
    out = from_gemini({"promptFeedback": {"blockReason": "SAFETY"},
                       "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}, "m")
    assert out["choices"][0]["finish_reason"] == "content_filter"
    assert out["choices"][0]["message"]["content"] == ""
    assert out["usage"]["prompt_tokens"] == 5


def test_several_candidates():
    """candidateCount > 1 gives one choice per candidate, in index order."""
    out = from_gemini({"candidates": [
        {"index": 1, "content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"},
        {"index": 0, "content": {"parts": [{"text": "a"}]}, "finishReason": "MAX_TOKENS"}]}, "m")
    assert [(c["message"]["content"], c["finish_reason"]) for c in out["choices"]] == [("a", "length"), ("b", "stop")]


# -- streams ----------------------------------------------------------------------------------


async def test_text_stream_with_usage_chunk():
    """Each event's text is a content delta; the finish chunk, a usage chunk and [DONE] follow."""
    meta = {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}
    out = await collect(stream_chunks(sse(
        {"candidates": [{"content": {"parts": [{"text": "Hel"}]}}], "responseId": "r"},
        {"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}], "usageMetadata": meta},
    ), "m", True))
    assert out[-1] == "[DONE]"
    deltas = [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in out[:-2]]
    assert deltas == [({"role": "assistant", "content": ""}, None), ({"content": "Hel"}, None),
                      ({"content": "lo"}, None), ({}, "stop")]
    assert out[-2]["choices"] == [] and out[-2]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert {c["id"] for c in out[:-1]} == {"chatcmpl-r"}
    assert all(c["object"] == "chat.completion.chunk" for c in out[:-1])


async def test_stream_tool_calls_and_no_usage_without_option():
    """functionCall parts stream as whole indexed tool-call deltas; no usage chunk unless asked."""
    out = await collect(stream_chunks(sse(
        {"candidates": [{"content": {"parts": [{"text": "thinking", "thought": True}]}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"name": "a", "args": {"x": 1}}},
                                               {"functionCall": {"name": "b", "args": {}}}]},
                         "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 1}},
    ), "m", False))
    assert out[1]["choices"][0]["delta"] == {"reasoning_content": "thinking"}
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in out[2:4]]
    assert [(c["index"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == \
        [(0, "a", '{"x":1}'), (1, "b", "{}")]
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    assert out[4]["choices"][0]["finish_reason"] == "tool_calls"
    assert out[5] == "[DONE]" and len(out) == 6


async def test_stream_error_event_raises():
    """An error object in the stream raises UpstreamError from the iterator, classified."""
    chunks = stream_chunks(sse({"candidates": [{"content": {"parts": [{"text": "a"}]}}]},
                               {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}), "m", False)
    seen = []
    with pytest.raises(UpstreamError) as info:
        async for c in chunks:
            seen.append(c)
    assert len(seen) == 2 and info.value.status == 503 and info.value.error_class == "server"
    assert "overloaded" in info.value.message


async def test_stream_without_finish_raises():
    """A stream that ends before any finishReason is an error, not a silent truncation."""
    with pytest.raises(UpstreamError, match="before a finish reason"):
        await collect(stream_chunks(sse({"candidates": [{"content": {"parts": [{"text": "a"}]}}]}), "m", False))


async def test_stream_prompt_blocked():
    """A blocked prompt in a stream ends with finish_reason content_filter."""
    out = await collect(stream_chunks(sse({"promptFeedback": {"blockReason": "OTHER"}}), "m", False))
    assert out[-2]["choices"][0]["finish_reason"] == "content_filter"


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status, body, error_class, delay", [
    (400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                     "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."}},
     "context_window", None),
    (429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}, "rate_limit", 37.0),
    (503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "The model is overloaded."}}, "server", None),
    (400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "API key not valid."}}, "client", None),
    (500, "<html>oops</html>", "server", None),
])
def test_error_parsing(status, body, error_class, delay):
    """Google error bodies give the message, a code that classifies right and RetryInfo's delay."""
    raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
    message, code, retry = parse_error(raw, status)
    assert classify_status(status, code) == error_class and retry == delay
    assert message == (body if isinstance(body, str) else body["error"]["message"])


# -- against the fake -------------------------------------------------------------------------


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


@pytest.fixture
async def provider(fake):
    pool = ClientPool()
    yield GeminiProvider(ProviderSpec("g", "gemini", fake.base_url, "gemini-test-key",
                                      MappingProxyType({}), 8, MappingProxyType({})), pool)
    await pool.close()


async def test_key_in_header_never_in_url(provider, fake):
    """The request goes to v1beta/models/MODEL:generateContent with the key in x-goog-api-key."""
    response = await provider.send(UpstreamRequest("chat", chat(user("hi")), False, T))
    assert orjson.loads(response.body)["choices"][0]["message"]["content"] == "gemini says: hi"
    sent = fake.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == "gemini-test-key" and "key" not in sent.query


async def test_tool_round_trip_passes_validation(provider, fake):
    """A tool call answered, then its result sent back with the signature, is accepted upstream."""
    first = orjson.loads((await provider.send(UpstreamRequest(
        "chat", chat(user("weather?"), tools=[WEATHER]), False, T))).body)
    message = first["choices"][0]["message"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    call = message["tool_calls"][0]
    assert orjson.loads(call["function"]["arguments"]) == {"city": "city-1"}
    follow = chat(user("weather?"), message, {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
                  tools=[WEATHER])
    second = orjson.loads((await provider.send(UpstreamRequest("chat", follow, False, T))).body)
    assert second["choices"][0]["message"]["content"] == 'gemini got tool results: {"content": "sunny"}'
    assert fake.requests[-1].body["contents"][1]["parts"][0]["thoughtSignature"] == "sig-0"
    assert fake.rejections == []


async def test_invalid_translation_would_fail(fake):
    """The fake refuses what the real API refuses: a raw JSON Schema keyword is a 400."""
    bad = {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [
        {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}},
                                     "additionalProperties": False}}]}]}
    with pytest.raises(Exception, match="additionalProperties"):
        validate(bad)


@pytest.mark.parametrize("script, status, error_class, retry_after", [
    (Script(status=429), 429, "rate_limit", 7.0), (Script(status=503), 503, "server", None),
    (Script(status=500), 500, "server", None)])
async def test_scripted_errors(provider, fake, script, status, error_class, retry_after):
    """Upstream errors become classified UpstreamErrors in OpenAI's shape, RetryInfo read."""
    fake.script("gemini-2.0-flash", script)
    with pytest.raises(UpstreamError) as info:
        await provider.send(UpstreamRequest("chat", chat(user("x")), False, T))
    err = info.value
    assert (err.status, err.error_class, err.retry_after) == (status, error_class, retry_after)
    assert set(orjson.loads(err.body)["error"]) == {"message", "type", "code", "param"}


async def test_context_error_and_bad_key(fake):
    """An oversized prompt is context_window; a wrong key is a client error; no key leaks."""
    pool = ClientPool()
    try:
        good = GeminiProvider(ProviderSpec("g", "gemini", fake.base_url, "gemini-test-key",
                                           MappingProxyType({}), 8, MappingProxyType({})), pool)
        with pytest.raises(UpstreamError) as info:
            await good.send(UpstreamRequest("chat", chat(user("x" * 30000)), False, T))
        assert info.value.error_class == "context_window"
        wrong = GeminiProvider(ProviderSpec("w", "gemini", fake.base_url, "wrong-key",
                                            MappingProxyType({}), 8, MappingProxyType({})), pool)
        with pytest.raises(UpstreamError) as info:
            await wrong.send(UpstreamRequest("chat", chat(user("x")), False, T))
        assert (info.value.status, info.value.error_class) == (400, "client")
        assert b"wrong-key" not in info.value.body and "wrong-key" not in info.value.message
    finally:
        await pool.close()


async def test_stream_through_fake(provider):
    """A stream against the fake reassembles to the same text, with a usage chunk."""
    body = chat(user("stream please"), stream=True, stream_options={"include_usage": True})
    out = await collect((await provider.send(UpstreamRequest("chat", body, True, T))).stream)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in out[:-1] if c["choices"])
    assert text == "gemini says: stream please" and out[-2]["usage"]["total_tokens"] > 0


async def test_stream_error_mid_stream_and_first(provider, fake):
    """An error event mid-stream raises from the iterator; as the first event, from send."""
    fake.script("gemini-2.0-flash", Script(stream_error_after=2))
    response = await provider.send(UpstreamRequest("chat", chat(user("a b c d")), True, T))
    with pytest.raises(UpstreamError) as info:
        await collect(response.stream)
    assert info.value.error_class == "server"
    fake.script("gemini-2.0-flash", Script(stream_error_after=0))
    with pytest.raises(UpstreamError):
        await provider.send(UpstreamRequest("chat", chat(user("x")), True, T))


async def test_embeddings_float_and_base64(provider, fake):
    """batchEmbedContents answers become OpenAI embeddings, as floats or base64 float32."""
    body = {"model": "text-embedding-004", "input": ["a", "b"], "dimensions": 4}
    floats = orjson.loads((await provider.send(UpstreamRequest("embeddings", body, False, T))).body)
    assert fake.requests[-1].path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert fake.requests[-1].body["requests"][0] == {"model": "models/text-embedding-004",
                                                     "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4}
    vectors = [d["embedding"] for d in floats["data"]]
    assert len(vectors) == 2 and all(len(v) == 4 for v in vectors)
    packed = orjson.loads((await provider.send(UpstreamRequest(
        "embeddings", {**body, "encoding_format": "base64"}, False, T))).body)
    decoded = struct.unpack("<4f", base64.b64decode(packed["data"][0]["embedding"]))
    assert decoded == pytest.approx(vectors[0], rel=1e-6)


async def test_completions_endpoint_is_refused(provider):
    """The legacy completions endpoint is a clear 400, not a confusing upstream error."""
    with pytest.raises(UpstreamError) as info:
        await provider.send(UpstreamRequest("completions", {"model": "m", "prompt": "x"}, False, T))
    assert info.value.status == 400 and "completions" in info.value.message


async def test_a_provider_without_file_uris_sends_nothing(provider, fake):
    body = chat({"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "https://generativelanguage.googleapis.com/v1beta/files/abc123"}}]})
    with pytest.raises(UpstreamError) as refused:
        await provider.send(UpstreamRequest("chat", body, False, T))
    assert refused.value.status == 400 and fake.requests == []
