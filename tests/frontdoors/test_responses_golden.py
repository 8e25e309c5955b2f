"""The /v1/responses translations against golden files (tests/frontdoors/golden/responses_*.json):
a Responses request with every item and part type -> chat, a chat answer -> a response object,
and a chat stream (text, then two tool calls, cut at arbitrary byte boundaries) -> Responses'
typed events. Random ids read as resp_ID, msg_ID, fc_ID; times as 0."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.frontdoors import openai_responses as wire

GOLDEN = Path(__file__).parent / "golden"
RESPONSE_ID = "resp_" + "0" * 48


def golden(name: str) -> dict:
    return json.loads((GOLDEN / f"responses_{name}.json").read_text())


def without_ids(value):
    text = re.sub(r'"(resp|msg|fc)_[0-9a-f]{48}"', r'"\1_ID"', json.dumps(value))
    return json.loads(re.sub(r'"(created_at|completed_at)": \d+', r'"\1": 0', text))


def test_request_to_chat():
    case = golden("request")
    before = json.dumps(case["request"])
    assert wire.to_chat(wire.parse(case["request"]), []) == case["chat"]
    assert json.dumps(case["request"]) == before  # never mutated


def test_answer_to_response():
    case = golden("answer")
    request = wire.parse({"model": "smart", "input": "Weather in Nice?",
                          "tools": case["response"]["tools"], "metadata": {"t": "1"}})
    assert without_ids(wire.from_chat(case["answer"], request, RESPONSE_ID, "smart")) \
        == case["response"]


@pytest.mark.parametrize("piece", [1, 7, 37, 10_000])
def test_stream_to_events(piece):
    case = golden("stream")
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in case["chunks"]) + \
        b"data: [DONE]\n\n"
    request = wire.parse({"model": "smart", "input": "Weather in Nice?",
                          "tools": golden("answer")["response"]["tools"], "metadata": {"t": "1"}})
    translator = wire.StreamToResponses(request, RESPONSE_ID, "smart")
    out = b"".join(translator.feed(raw[i:i + piece]) for i in range(0, len(raw), piece))
    out += translator.finish()
    blocks = [block.split("\n") for block in out.decode().strip().split("\n\n")]
    assert all(name == "event: " + json.loads(data[6:])["type"] for name, data in blocks)
    assert without_ids([json.loads(data[6:]) for _, data in blocks]) == case["events"]
    assert translator.response == json.loads(blocks[-1][1][6:])["response"]


def test_a_cut_answer_is_incomplete():
    """finish_reason length: status incomplete, reason max_output_tokens, whole or streamed."""
    request = wire.parse({"model": "m", "input": "x", "max_output_tokens": 2})
    answer = {"choices": [{"finish_reason": "length", "message": {"content": "a b"}}]}
    response = wire.from_chat(answer, request, RESPONSE_ID, "m")
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    translator = wire.StreamToResponses(request, RESPONSE_ID, "m")
    translator.feed(b'data: {"choices": [{"index": 0, "delta": {"content": "a"}, '
                    b'"finish_reason": "length"}]}\n\n')
    assert b"event: response.incomplete" in translator.finish()


def test_empty_stream_is_still_a_whole_response():
    """A stream that ends without any chunk still gives created, in_progress, completed."""
    translator = wire.StreamToResponses(wire.parse({"model": "m", "input": "x"}), RESPONSE_ID, "m")
    events = translator.finish().decode()
    assert [line for line in events.splitlines() if line.startswith("event:")] == [
        "event: response.created", "event: response.in_progress", "event: response.completed"]


def test_native_body_inlines_the_history():
    """The history goes before the input, without ids (earlier answers as plain assistant
    messages, reasoning only with its encrypted content, hosted tool calls not at all), and
    store is false."""
    history = [wire.parse({"model": "m", "input": "hi"}).input[0],
               wire.message_item("hello"),
               {"type": "reasoning", "id": "rs_1", "summary": []},
               {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "e"},
               {"type": "web_search_call", "id": "ws_1", "status": "completed"},
               wire.call_item("call_1", "f", "{}")]
    request = wire.parse({"model": "m", "input": "more", "previous_response_id": "resp_1",
                          "store": True})
    body = wire.native_body(request, history)
    assert body == {"model": "m", "store": False, "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"role": "assistant", "content": "hello"},
        {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "e"},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"role": "user", "content": "more"}]}


@pytest.mark.parametrize("body, words", [
    ({"model": "m"}, "'input' must be"),
    ({"model": "m", "input": []}, "non-empty list"),
    ({"model": "m", "input": [1]}, "input[0] must be an object"),
    ({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, "item references"),
    ({"model": "m", "input": [{"type": "function_call", "call_id": "c"}]}, "input[0].name"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": 3}]},
     "input[0].output"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
     "needs image_url or file_id"),
    ({"model": "m", "input": [{"role": "assistant", "content": [{"type": "input_image"}]}]},
     "not permitted in assistant content"),
    ({"model": "m", "input": "x", "stream": "yes"}, "'stream' must be true or false"),
    ({"model": "m", "input": "x", "instructions": ["a"]}, "'instructions' must be a string"),
    ({"model": "m", "input": "x", "tools": {"type": "function"}}, "'tools' must be a list"),
    ({"model": "m", "input": "x", "conversation": "conv_1"}, "previous_response_id"),
])
def test_bad_requests_are_400s_that_name_the_field(body, words):
    with pytest.raises(GatewayError) as raised:
        wire.to_chat(wire.parse(body), [])
    assert raised.value.status == 400 and words in raised.value.message


@pytest.mark.parametrize("part, words", [
    ({"type": "input_image", "file_id": "file_1"}, "image_url"),
    ({"type": "input_file", "file_url": "https://x/y.pdf"}, "file_data"),
])
def test_openai_only_inputs_are_400s_for_chat_targets(part, words):
    request = wire.parse({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "see"}, part]}]})
    with pytest.raises(GatewayError) as raised:
        wire.to_chat(request, [])
    assert words in raised.value.message
    assert wire.to_chat(request, [], strict=False)["messages"] == [  # a stand-in for middleware
        {"role": "user", "content": [{"type": "text", "text": "see"}]}]
    assert wire.native_body(request, [])["input"][0]["content"][1] == part  # OpenAI takes it


def test_error_event_shape():
    """Responses' error event, with an `error` object as well (what OpenAI's SDKs raise on)."""
    raw = wire.error_event(502, "stream interrupted: reset", "server_error", 7)
    name, data = raw.decode().strip().split("\n")
    payload = json.loads(data.removeprefix("data: "))
    assert name == "event: error"
    assert payload["sequence_number"] == 7 and payload["code"] == "server_error"
    assert payload["error"]["message"] == payload["message"] == "stream interrupted: reset"
