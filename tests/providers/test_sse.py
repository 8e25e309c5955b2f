"""SSE parsing across arbitrary chunk boundaries."""

from __future__ import annotations

import pytest

from gateway.providers.sse import Event, chunk, events


async def parse(*parts: bytes) -> list[Event]:
    async def gen():
        for p in parts:
            yield p

    return [e async for e in events(gen())]


async def test_events_split_across_chunks():
    """An event cut anywhere between chunks is parsed whole."""
    raw = b"event: message_start\ndata: {\"a\": 1}\n\ndata: x\r\n\r\n"
    for cut in range(1, len(raw)):
        assert await parse(raw[:cut], raw[cut:]) == [
            Event("message_start", '{"a": 1}'), Event(None, "x")]


async def test_comments_and_multiline_data():
    """Comment lines are skipped; several data lines join with newlines."""
    assert await parse(b": ping\n\ndata: a\ndata: b\n\n") == [Event(None, "a\nb")]


async def test_unterminated_last_event_is_kept():
    """A final event without its blank line still counts."""
    assert await parse(b"data: last") == [Event(None, "last")]


@pytest.mark.parametrize("payload", [{"choices": []}, {"x": "é"}])
def test_chunk_encoding(payload):
    """OpenAI chunks are `data: JSON` followed by a blank line."""
    encoded = chunk(payload)
    assert encoded.startswith(b"data: {") and encoded.endswith(b"}\n\n")
