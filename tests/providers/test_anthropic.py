"""The anthropic adapter's golden translations both ways, as pure functions: OpenAI bodies to
Anthropic requests (each checked against the fake API's validation), Anthropic answers, stream
events and errors back to OpenAI shapes. The adapter over HTTP: test_anthropic_http.py."""

from __future__ import annotations

import base64
import copy

import orjson
import pytest

from gateway.errors import UpstreamError
from gateway.providers.anthropic_response import (
    StreamTranslator, from_anthropic, parse_error, usage)
from gateway.providers.anthropic_translate import TranslationError, to_anthropic

from .fake_anthropic import validate

USER = {"role": "user", "content": "Hello"}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
WEATHER_TOOL = {"name": "get_weather", "description": "Weather in a city", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def translate(body: dict, **kw) -> dict:
    """to_anthropic, checked to leave its input alone and to pass the fake API's validation."""
    before = copy.deepcopy(body)
    out = to_anthropic({"model": "claude-x", **body}, **kw)
    assert body == before
    validate(out.body)
    return out.body


def call(id_: str, name: str, args: str) -> dict:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


# -- OpenAI body -> Anthropic body ----------------------------------------------------------


def test_plain_chat_gets_default_max_tokens():
    """A minimal body gets max_tokens 4096; nothing else is added."""
    assert translate({"messages": [USER]}) == {
        "model": "claude-x", "max_tokens": 4096, "messages": [USER]}


def test_max_tokens_and_max_completion_tokens():
    """max_completion_tokens wins over max_tokens; the provider default applies otherwise."""
    assert translate({"messages": [USER], "max_tokens": 50})["max_tokens"] == 50
    assert translate({"messages": [USER], "max_tokens": 50,
                      "max_completion_tokens": 70})["max_tokens"] == 70
    assert translate({"messages": [USER]}, default_max_tokens=999)["max_tokens"] == 999


def test_system_and_developer_messages_become_system():
    """System and developer messages, wherever they are, become the top-level system."""
    out = translate({"messages": [
        {"role": "system", "content": "Be brief."}, USER,
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "assistant", "content": "Bonjour"}, {"role": "user", "content": "Encore"}]})
    assert out["system"] == [{"type": "text", "text": "Be brief."},
                             {"type": "text", "text": "Use French."}]
    assert out["messages"] == [USER, {"role": "assistant", "content": "Bonjour"},
                               {"role": "user", "content": "Encore"}]


def test_single_system_prompt_is_a_string_and_cache_control_is_kept():
    """One plain system prompt is sent as a string; cache_control on a part is carried over."""
    assert translate({"messages": [{"role": "system", "content": "S"}, USER]})["system"] == "S"
    cached = {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}
    out = translate({"messages": [{"role": "system", "content": [cached]}, USER]})
    assert out["system"] == [cached]


def test_consecutive_roles_merge_and_conversation_starts_with_user():
    """Same-role neighbours merge so roles alternate; a leading assistant gets a user turn."""
    out = translate({"messages": [
        {"role": "assistant", "content": "Hi, how can I help?"},
        {"role": "user", "content": "One"}, {"role": "user", "content": "Two"}]})
    assert out["messages"] == [
        {"role": "user", "content": "."},
        {"role": "assistant", "content": "Hi, how can I help?"},
        {"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}]}]


def test_final_assistant_prefill_loses_trailing_whitespace():
    """A final assistant message (a prefill) may not end in whitespace; empty text is dropped."""
    out = translate({"messages": [USER, {"role": "assistant", "content": "The answer is "}]})
    assert out["messages"][-1] == {"role": "assistant", "content": "The answer is"}
    out = translate({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "text", "text": "  "}]}]})
    assert out["messages"] == [{"role": "user", "content": "a"}]


def test_multi_turn_with_tool_call_and_result():
    """Assistant tool_calls become tool_use blocks; a tool message a user tool_result block."""
    out = translate({
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Let me check.",
             "tool_calls": [call("toolu_1", "get_weather", '{"city": "Paris"}')]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C, sunny"},
        ],
        "tools": [WEATHER], "tool_choice": "auto"})
    assert out == {
        "model": "claude-x", "max_tokens": 4096,
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"}]},
        ],
        "tools": [WEATHER_TOOL], "tool_choice": {"type": "auto"}}


def test_parallel_tool_results_share_one_user_turn_before_text():
    """Consecutive tool messages form one user turn; a following user text comes after them."""
    out = translate({
        "messages": [
            USER,
            {"role": "assistant", "content": None, "tool_calls": [
                call("t_a", "get_weather", '{"city": "Oslo"}'),
                call("t_b", "get_weather", '{"city": "Rome"}')]},
            {"role": "tool", "tool_call_id": "t_a", "content": [{"type": "text", "text": "-2C"}]},
            {"role": "tool", "tool_call_id": "t_b", "content": "21C"},
            {"role": "user", "content": "Compare them."},
        ],
        "tools": [WEATHER], "parallel_tool_calls": False})
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "t_a", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "t_b", "name": "get_weather", "input": {"city": "Rome"}}]
    assert out["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t_a", "content": [{"type": "text", "text": "-2C"}]},
        {"type": "tool_result", "tool_use_id": "t_b", "content": "21C"},
        {"type": "text", "text": "Compare them."}]}
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    # A user message between the calls and their results still lets the results open the turn.
    out = translate({"messages": [
        USER, {"role": "assistant", "tool_calls": [call("t_a", "get_weather", "{}")]},
        {"role": "user", "content": "Hurry."}, {"role": "tool", "tool_call_id": "t_a", "content": "1C"}],
        "tools": [WEATHER]})
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t_a", "content": "1C"},
        {"type": "text", "text": "Hurry."}]


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
    ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice(choice, expected):
    """Each OpenAI tool_choice has its Anthropic counterpart."""
    out = translate({"messages": [USER], "tools": [WEATHER], "tool_choice": choice})
    assert out["tool_choice"] == expected


def test_tool_history_without_tools_declares_them_uncallable():
    """Tool blocks in history need tool definitions: the history's tools, with choice none."""
    out = translate({"messages": [
        USER, {"role": "assistant", "tool_calls": [call("t1", "lookup", "{}")]},
        {"role": "tool", "tool_call_id": "t1", "content": "found"}]})
    assert [t["name"] for t in out["tools"]] == ["lookup"]
    assert out["tool_choice"] == {"type": "none"}


def test_images_data_url_https_url_and_pdf():
    """Data URLs become base64 sources, http(s) URLs url sources, PDF files documents."""
    out = translate({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
    ]}]})
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": "JVBERi0x"}}]


def test_data_urls_are_read_as_the_other_native_adapters_read_them():
    """One data-URL parser for every adapter: a percent-encoded image is sent as base64, and
    base64 that does not decode is a 400 naming the part, before anything is sent."""
    out = translate({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png,%89PNG%0D%0A"}}]}]})
    assert out["messages"][0]["content"] == [{"type": "image", "source": {
        "type": "base64", "media_type": "image/png",
        "data": base64.b64encode(b"\x89PNG\r\n").decode()}}]
    with pytest.raises(TranslationError) as info:
        to_anthropic({"model": "claude-x", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "see"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR@@"}}]}]})
    assert info.value.param == "messages[0].content[1]" and "base64" in info.value.message


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [USER], "n": 2}, "n"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
    ({"messages": [USER, {"role": "assistant", "tool_calls": [call("t", "f", "{oops")]}]},
     "messages[1].tool_calls[0]"),
    ({"messages": [USER], "reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ({"messages": [USER], "temperature": "hot"}, "temperature"),
    ({"messages": [USER], "stop": 5}, "stop"),
    ({"messages": [USER], "tools": ["get_weather"]}, "tools[0]"),
    ({"messages": [USER], "response_format": {"type": "json_schema",
                                               "json_schema": {"schema": "yes"}}}, "response_format"),
])
def test_untranslatable_requests_name_the_parameter(body, param):
    """What Anthropic cannot express is a TranslationError naming the parameter."""
    with pytest.raises(TranslationError) as info:
        to_anthropic({"model": "claude-x", **body})
    assert info.value.param == param


def test_json_object_adds_a_system_instruction():
    """response_format json_object becomes an instruction appended to the system prompt."""
    out = translate({"messages": [{"role": "system", "content": "S"}, USER],
                     "response_format": {"type": "json_object"}})
    assert out["system"][0] == {"type": "text", "text": "S"}
    assert "single valid JSON object" in out["system"][1]["text"]


def test_json_schema_becomes_a_forced_tool():
    """json_schema without other tools is a forced tool whose input is the answer."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    result = to_anthropic({"model": "m", "messages": [USER], "response_format": {
        "type": "json_schema", "json_schema": {"name": "count", "schema": schema}}})
    assert result.json_tool == "count"
    assert result.body["tools"] == [{"name": "count", "description": result.body["tools"][0]
                                     ["description"], "input_schema": schema}]
    assert result.body["tool_choice"] == {"type": "tool", "name": "count"}
    validate(result.body)


def test_json_schema_with_tools_is_an_instruction():
    """With the client's own tools, json_schema is an instruction carrying the schema."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    result = to_anthropic({"model": "m", "messages": [USER], "tools": [WEATHER],
                           "response_format": {"type": "json_schema",
                                               "json_schema": {"name": "count", "schema": schema}}})
    assert result.json_tool is None and result.body["tools"] == [WEATHER_TOOL]
    assert orjson.dumps(schema).decode() in result.body["system"]


@pytest.mark.parametrize("effort, budget, max_tokens", [
    ("low", 1024, 4096 + 1024), ("medium", 4096, 4096 + 4096), ("high", 16384, 4096 + 16384)])
def test_reasoning_effort_budgets(effort, budget, max_tokens):
    """reasoning_effort maps to a thinking budget on top of the default max_tokens."""
    out = translate({"messages": [USER], "reasoning_effort": effort, "temperature": 0.2,
                     "top_p": 0.5})
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] == max_tokens
    assert "temperature" not in out and "top_p" not in out  # not allowed with thinking


def test_reasoning_budget_fits_inside_the_clients_max_tokens():
    """A client's max_tokens caps the total: the budget shrinks, or thinking stays off."""
    out = translate({"messages": [USER], "reasoning_effort": "high", "max_tokens": 3000})
    assert out["max_tokens"] == 3000 and out["thinking"]["budget_tokens"] == 2999
    out = translate({"messages": [USER], "reasoning_effort": "low", "max_tokens": 1000})
    assert "thinking" not in out and out["max_tokens"] == 1000
    assert "thinking" not in translate({"messages": [USER], "reasoning_effort": "minimal"})
    native = translate({"messages": [USER], "thinking": {"type": "enabled", "budget_tokens": 8000}})
    assert native["thinking"]["budget_tokens"] == 8000 and native["max_tokens"] == 4096 + 8000


def test_reasoning_is_off_when_it_cannot_be_on():
    """Forced tool use, or a tool-call turn without its thinking block, leaves thinking off."""
    forced = translate({"messages": [USER], "tools": [WEATHER], "tool_choice": "required",
                        "reasoning_effort": "low"})
    assert "thinking" not in forced
    history = [USER, {"role": "assistant", "tool_calls": [call("t1", "get_weather", "{}")]},
               {"role": "tool", "tool_call_id": "t1", "content": "ok"}]
    assert "thinking" not in translate({"messages": history, "tools": [WEATHER],
                                        "reasoning_effort": "low"})
    kept = [{**history[1], "thinking_blocks": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"}]}]
    out = translate({"messages": [USER, *kept, history[2]], "tools": [WEATHER],
                     "reasoning_effort": "low"})
    assert out["thinking"]["type"] == "enabled"
    assert out["messages"][1]["content"][0] == {"type": "thinking", "thinking": "hmm",
                                                "signature": "sig"}


def test_sampling_stop_user_and_dropped_parameters():
    """stop becomes stop_sequences, user metadata.user_id; OpenAI-only knobs are dropped."""
    out = translate({"messages": [USER], "stop": "END", "user": "u-42", "temperature": 1.7,
                     "top_p": 0.9, "seed": 7, "presence_penalty": 1, "frequency_penalty": 1,
                     "logprobs": True, "stream_options": {"include_usage": True}, "top_k": 5})
    assert out == {"model": "claude-x", "max_tokens": 4096, "messages": [USER],
                   "temperature": 1.0, "top_p": 0.9, "stop_sequences": ["END"],
                   "metadata": {"user_id": "u-42"}, "top_k": 5}
    assert translate({"messages": [USER], "stop": ["a", "", " ", "b"]})["stop_sequences"] == ["a", "b"]
    assert translate({"messages": [USER]}, stream=True)["stream"] is True


# -- Anthropic answers -> OpenAI ------------------------------------------------------------


def message(content: list[dict], stop: str = "end_turn", **usage_) -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5, **usage_}}


def test_text_response():
    """A text message becomes a chat.completion with usage."""
    out = from_anthropic(message([{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]),
                         created=1)
    assert out == {
        "id": "msg_1", "object": "chat.completion", "created": 1, "model": "claude-x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                  "prompt_tokens_details": {"cached_tokens": 0},
                  "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}}


def test_parallel_tool_use_response():
    """tool_use blocks become tool_calls with JSON arguments; content is null without text."""
    out = from_anthropic(message([
        {"type": "tool_use", "id": "t_a", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "t_b", "name": "get_weather", "input": {"city": "Rome"}}],
        stop="tool_use"))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t_a", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
        {"id": "t_b", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]}


def test_thinking_response_has_reasoning_content():
    """Thinking blocks become reasoning_content, and thinking_blocks to send back later."""
    out = from_anthropic(message([
        {"type": "thinking", "thinking": "Two plus two...", "signature": "sig1"},
        {"type": "redacted_thinking", "data": "xyz"},
        {"type": "text", "text": "4"}]))
    msg = out["choices"][0]["message"]
    assert msg["content"] == "4" and msg["reasoning_content"] == "Two plus two..."
    assert msg["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Two plus two...", "signature": "sig1"},
        {"type": "redacted_thinking", "data": "xyz"}]


def test_json_tool_response_is_content():
    """The forced json_schema tool's input is the message content, finish_reason stop."""
    out = from_anthropic(message([{"type": "tool_use", "id": "t", "name": "count",
                                   "input": {"n": 3}}], stop="tool_use"), json_tool="count")
    assert out["choices"][0]["message"] == {"role": "assistant", "content": '{"n":3}'}
    assert out["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("stop, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"), ("pause_turn", "stop"),
    ("model_context_window_exceeded", "length"), (None, "stop")])
def test_every_finish_reason(stop, finish):
    """Each stop_reason maps to its OpenAI finish_reason."""
    assert from_anthropic(message([], stop=stop))["choices"][0]["finish_reason"] == finish


def test_usage_counts_cached_tokens_as_prompt_tokens():
    """Cache reads and writes are part of prompt_tokens; reads are cached_tokens."""
    assert usage({"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 20}) == {
        "prompt_tokens": 125, "completion_tokens": 7, "total_tokens": 132,
        "prompt_tokens_details": {"cached_tokens": 100},
        "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}


# -- stream events -> OpenAI chunks ---------------------------------------------------------


START = {"type": "message_start", "message": {
    "id": "msg_s", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 1,
                                                          "cache_read_input_tokens": 4}}}


def feed_all(events: list[dict], **kw) -> list[dict]:
    translator = StreamTranslator(created=1, **kw)
    out = []
    for event in events:
        out.extend(translator.feed(event))
    return out


def deltas(chunks: list[dict]) -> list[tuple[dict, str | None]]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks if c["choices"]]


def block(index: int, content_block: dict) -> dict:
    return {"type": "content_block_start", "index": index, "content_block": content_block}


def delta(index: int, **d) -> dict:
    return {"type": "content_block_delta", "index": index, "delta": d}


def stop_events(reason: str, output_tokens: int = 8) -> list[dict]:
    return [{"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
             "usage": {"output_tokens": output_tokens}}, {"type": "message_stop"}]


def test_text_stream():
    """A text stream: role chunk, content deltas, finish chunk; ping and block stops vanish."""
    chunks = feed_all([START, block(0, {"type": "text", "text": ""}), {"type": "ping"},
                       delta(0, type="text_delta", text="Hel"), delta(0, type="text_delta", text="lo"),
                       {"type": "content_block_stop", "index": 0}, *stop_events("end_turn")])
    assert chunks[0] == {"id": "msg_s", "object": "chat.completion.chunk", "created": 1,
                         "model": "claude-x", "choices": [{"index": 0, "delta": {
                             "role": "assistant", "content": ""}, "finish_reason": None}]}
    assert deltas(chunks) == [({"role": "assistant", "content": ""}, None),
                              ({"content": "Hel"}, None), ({"content": "lo"}, None),
                              ({}, "stop")]


def test_tool_call_argument_deltas_for_parallel_calls():
    """Each tool_use block is a tool call (index, id, name), then its argument fragments."""
    chunks = feed_all([
        START, block(0, {"type": "text", "text": ""}), delta(0, type="text_delta", text="Checking."),
        block(1, {"type": "tool_use", "id": "t_a", "name": "get_weather", "input": {}}),
        delta(1, type="input_json_delta", partial_json=""),
        delta(1, type="input_json_delta", partial_json='{"city": '),
        delta(1, type="input_json_delta", partial_json='"Oslo"}'),
        block(2, {"type": "tool_use", "id": "t_b", "name": "get_weather", "input": {}}),
        delta(2, type="input_json_delta", partial_json='{"city": "Rome"}'),
        *stop_events("tool_use")])
    assert deltas(chunks)[1:] == [
        ({"content": "Checking."}, None),
        ({"tool_calls": [{"index": 0, "id": "t_a", "type": "function",
                          "function": {"name": "get_weather", "arguments": ""}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}, None),
        ({"tool_calls": [{"index": 1, "id": "t_b", "type": "function",
                          "function": {"name": "get_weather", "arguments": ""}}]}, None),
        ({"tool_calls": [{"index": 1, "function": {"arguments": '{"city": "Rome"}'}}]}, None),
        ({}, "tool_calls")]


def test_thinking_stream_is_reasoning_content():
    """thinking_delta becomes reasoning_content deltas; the signature is not shown."""
    chunks = feed_all([START, block(0, {"type": "thinking", "thinking": ""}),
                       delta(0, type="thinking_delta", thinking="Hmm."),
                       delta(0, type="signature_delta", signature="sig"),
                       block(1, {"type": "text", "text": ""}), delta(1, type="text_delta", text="4"),
                       *stop_events("end_turn")])
    assert deltas(chunks)[1:] == [({"reasoning_content": "Hmm."}, None), ({"content": "4"}, None),
                                  ({}, "stop")]


def test_usage_chunk_when_include_usage():
    """With include_usage, message_stop adds a chunk with empty choices and the whole usage."""
    events = [START, *stop_events("max_tokens", output_tokens=30)]
    chunks = feed_all(events, include_usage=True)
    assert deltas(chunks)[-1] == ({}, "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 13, "completion_tokens": 30, "total_tokens": 43,
        "prompt_tokens_details": {"cached_tokens": 4},
        "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0}
    assert all("usage" not in c for c in feed_all(events))


def test_json_tool_stream_is_content():
    """The forced json_schema tool streams its argument fragments as content."""
    chunks = feed_all([START, block(0, {"type": "tool_use", "id": "t", "name": "count", "input": {}}),
                       delta(0, type="input_json_delta", partial_json='{"n"'),
                       delta(0, type="input_json_delta", partial_json=": 3}"),
                       *stop_events("tool_use")], json_tool="count")
    assert deltas(chunks)[1:] == [({"content": '{"n"'}, None), ({"content": ": 3}"}, None),
                                  ({}, "stop")]


def test_error_event_mid_stream_raises():
    """An error event raises UpstreamError with the status its type stands for."""
    translator = StreamTranslator(created=1)
    translator.feed(START)
    with pytest.raises(UpstreamError) as info:
        translator.feed({"type": "error", "error": {"type": "overloaded_error",
                                                    "message": "Overloaded"}})
    assert (info.value.status, info.value.error_class, info.value.message) == (
        529, "server", "Overloaded")


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status, kind, text, code", [
    (400, "invalid_request_error", "max_tokens: Field required", "invalid_request_error"),
    (400, "invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum",
     "context_length_exceeded"),
    (400, "invalid_request_error",
     "input length and `max_tokens` exceed context limit: 199000 + 8192 > 200000",
     "context_length_exceeded"),
    (400, "invalid_request_error", "Output blocked by content filtering policy", "content_filter"),
    (529, "overloaded_error", "Overloaded", "overloaded_error"),
])
def test_parse_error_keeps_message_and_names_code(status, kind, text, code):
    """Anthropic's error body gives the message as is and a code the gateway classifies."""
    body = orjson.dumps({"type": "error", "error": {"type": kind, "message": text}})
    assert parse_error(body, status) == (text, code)
    assert parse_error(b"<html>bad gateway</html>", 502) == ("<html>bad gateway</html>", None)
