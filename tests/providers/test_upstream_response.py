"""UpstreamResponse parses a whole body once: json() and usage share the value, and a new body
(assigned, or handed over with set_json) is what they return next."""

from __future__ import annotations

import orjson
import pytest

from gateway.providers.base import UpstreamResponse

ANSWER = {"choices": [{"message": {"content": "hi"}}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 4}}


@pytest.fixture
def loads(monkeypatch) -> list[bytes]:
    """Every orjson.loads call, by its argument."""
    calls: list[bytes] = []
    real = orjson.loads

    def counting(data):
        calls.append(data)
        return real(data)

    monkeypatch.setattr(orjson, "loads", counting)
    return calls


def test_the_body_is_parsed_once_for_json_and_usage(loads):
    """json() twice and usage twice: one parse, one shared value."""
    response = UpstreamResponse(200, body=orjson.dumps(ANSWER))
    first = response.json()
    assert response.json() is first and first == ANSWER
    assert response.usage == {"prompt_tokens": 3, "completion_tokens": 4}
    assert response.usage is first["usage"]
    assert len(loads) == 1


def test_assigning_a_body_drops_the_parsed_value(loads):
    """A middleware that replaces the body: json() and usage read the new one."""
    response = UpstreamResponse(200, body=orjson.dumps(ANSWER))
    assert response.usage is not None
    response.body = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 9}})
    assert response.json() == {"choices": [], "usage": {"prompt_tokens": 9}}
    assert response.usage == {"prompt_tokens": 9}
    assert len(loads) == 2


def test_set_json_replaces_the_body_and_keeps_the_value(loads):
    """set_json: the body is the value's JSON, and json() returns the value without parsing."""
    response = UpstreamResponse(200, body=b'{"old": true}')
    value = {"choices": [{"message": {"content": "restored"}}]}
    response.set_json(value)
    assert orjson.loads(response.body) == value  # (this parse is the test's own)
    assert response.json() is value
    assert loads == [response.body]


@pytest.mark.parametrize("body", [None, b"not json", b"[1, 2]", b'{"usage": "lots"}'])
def test_no_json_object_or_no_usage_object_gives_none_usage(body):
    """No body, a body that is not JSON, not an object, or a usage that is not an object."""
    response = UpstreamResponse(200, body=body)
    assert response.usage is None
    if body in (None, b"not json"):
        assert response.json() is None


def test_a_stream_has_no_json():
    """A streamed answer has no whole body to parse."""

    async def chunks():
        yield b"data: {}\n\n"

    stream = chunks()
    response = UpstreamResponse(200, stream=stream, media_type="text/event-stream")
    assert response.json() is None and response.usage is None and response.headers == {}
    assert "stream" in repr(response)
