"""The /v1/messages translations against golden files (tests/frontdoors/golden/messages_*.json):
a Messages request with every block type -> chat, a chat answer -> a message, and a chat
stream (cut at arbitrary byte boundaries) -> Anthropic's event sequence. Random message ids
read as msg_ID."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.frontdoors import anthropic_messages as wire

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> dict:
    return json.loads((GOLDEN / f"messages_{name}.json").read_text())


def without_ids(value):
    return json.loads(re.sub(r'"msg_[0-9a-f]{24}"', '"msg_ID"', json.dumps(value)))


def test_request_to_chat():
    case = golden("request")
    before = json.dumps(case["request"])
    assert wire.to_chat(case["request"]) == case["chat"]
    assert json.dumps(case["request"]) == before  # never mutated


def test_answer_to_message():
    case = golden("answer")
    assert without_ids(wire.from_chat(case["answer"], "smart")) == case["message"]


@pytest.mark.parametrize("piece", [1, 7, 37, 10_000])
def test_stream_to_events(piece):
    case = golden("stream")
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in case["chunks"]) + \
        b"data: [DONE]\n\n"
    translator = wire.StreamToMessages("smart")
    out = b"".join(translator.feed(raw[i:i + piece]) for i in range(0, len(raw), piece))
    out += translator.finish()
    events = [[name.removeprefix("event: "), json.loads(data.removeprefix("data: "))]
              for name, data in (block.split("\n") for block in out.decode().strip().split("\n\n"))]
    assert without_ids(events) == case["events"]


def test_empty_stream_is_still_a_whole_message():
    """A stream that ends without any chunk still gives a well-formed event sequence."""
    events = wire.StreamToMessages("m").finish().decode()
    assert [line for line in events.splitlines() if line.startswith("event:")] == [
        "event: message_start", "event: ping", "event: message_delta", "event: message_stop"]


@pytest.mark.parametrize("body, words", [
    ({"model": "m", "messages": []}, "max_tokens: Field required"),
    ({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": "m", "max_tokens": 5, "messages": []}, "non-empty list"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "role"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}, "source.type"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
      "tool_choice": {"type": "sometimes"}, "tools": [{"name": "t", "input_schema": {}}]},
     "tool_choice"),
])
def test_bad_requests_are_400s_that_name_the_field(body, words):
    with pytest.raises(GatewayError) as raised:
        wire.to_chat(body)
    assert raised.value.status == 400 and words in raised.value.message


def test_error_shape():
    assert orjson.loads(wire.error_body(529, "busy")) == {
        "type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    assert wire.error_event(401, "no").startswith(b"event: error\ndata: {")
