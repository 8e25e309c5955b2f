"""SSE framing: parsing across arbitrary chunk boundaries, and the events the gateway writes."""

from __future__ import annotations

import pytest

from gateway.providers.sse import DONE, Event, SSEFramer, chunk, data_event, ends_event, events, parse_event


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


async def test_cr_only_line_endings():
    """Lines may end with a lone CR, as the SSE format allows, and events still come apart."""
    assert await parse(b"event: a\rdata: 1\r\rdata: 2\r\r") == [Event("a", "1"), Event(None, "2")]


async def test_bytes_that_are_not_utf8_do_not_end_the_stream():
    """A garbled byte reads as U+FFFD; the events around it are still parsed."""
    assert await parse(b"data: a\xff\n\ndata: b\n\n") == [Event(None, "a\ufffd"), Event(None, "b")]


def test_parse_event_reads_what_the_framer_cuts():
    """The framer's events parse back to their fields; a comment-only event is None."""
    framer = SSEFramer()
    cut = framer.feed(b": ping\n\nevent: x\ndata:1\ndata:  2\n\n")
    assert [parse_event(e) for e in cut] == [None, Event("x", "1\n 2")]


def test_data_event_and_done_are_what_parsers_read():
    """What the gateway writes (chunks, [DONE], the server's error event) parses back."""
    for written, data in [(data_event(b'{"error": {}}'), '{"error": {}}'), (DONE, "[DONE]"),
                          (chunk({"a": 1}), '{"a":1}')]:
        assert ends_event(written)
        assert parse_event(written) == Event(None, data)


@pytest.mark.parametrize("sent, ends", [(b"x\n\n", True), (b"\r\n\r\n", True), (b"\r\r", True),
                                        (b'data: {"a"', False), (b"data: 1\n", False)])
def test_ends_event(sent, ends):
    """Whether relayed bytes stop between events (so an error event can follow directly)."""
    assert ends_event(sent) is ends
