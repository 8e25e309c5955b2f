"""SSE framing: parsing across arbitrary chunk boundaries, and the events the gateway writes."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import UpstreamError
from gateway.providers import sse
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


_STREAMS = st.lists(st.sampled_from([b"data: 1", b"\n", b"\r", b"\r\n", b"event: x", b"data: {\"a\": 2}",
                                     b": ping", b"x" * 5]), max_size=40).map(b"".join)


@given(_STREAMS, st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=8))
def test_events_do_not_depend_on_how_the_stream_is_cut(stream, sizes):
    """Fed whole or in pieces of any sizes, the framer cuts the same events and keeps the same
    unfinished rest."""
    whole = SSEFramer()
    expected = whole.feed(stream), whole.rest()
    framer, cut, at, i = SSEFramer(), [], 0, 0
    while at < len(stream):
        size = sizes[i % len(sizes)]
        cut += framer.feed(stream[at:at + size])
        at, i = at + size, i + 1
    assert (cut, framer.rest()) == expected


def test_an_event_that_never_ends_is_cut_off_at_the_cap(monkeypatch):
    """An upstream sending one event without end (no blank line) cannot make the framer hold
    all of it: past MAX_EVENT bytes the stream fails as an upstream server error."""
    monkeypatch.setattr(sse, "MAX_EVENT", 1024 * 1024)
    framer = SSEFramer()
    framer.feed(b"data: ")
    with pytest.raises(UpstreamError) as failed:
        for _ in range(64):
            framer.feed(b"x" * 65536)
    assert failed.value.status == 502 and "larger than 1MB" in failed.value.message


def test_a_long_event_in_small_pieces_is_read_in_linear_time():
    """Each piece is searched for an event end where one can be, not the whole event again:
    16 MB in 4 KB pieces (4,096 feeds) is a fraction of a second; searching the held bytes
    again on every feed took minutes."""
    framer, started = SSEFramer(), time.monotonic()
    framer.feed(b"data: ")
    for _ in range(4096):
        assert framer.feed(b"y" * 4096) == []
    [event] = framer.feed(b"\n\n")
    assert len(event) == 6 + 16 * 1024 * 1024 + 2
    assert time.monotonic() - started < 20
