"""Server-sent events, one framer for the whole gateway: cut a byte stream into events, read an
event's fields, write data events (OpenAI's chunks, ``[DONE]``, the server's mid-stream error
event), and tell whether an OpenAI-compatible stream ended complete."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, AsyncIterator

import orjson

from ..errors import UpstreamError
from ..units import size_text

DONE = b"data: [DONE]\n\n"
MAX_EVENT = 32 * 1024 * 1024  # bytes of one event held at most (SSEFramer)
_EVENT_END = re.compile(rb"(?>\r\n|\n|\r)(?>\r\n|\n|\r)")
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n", b"\r\r")
_LINE_END = re.compile(r"\r\n|\n|\r")
# What ends an OpenAI-compatible stream: `data: [DONE]`, or a choice's (non-null) finish_reason.
_COMPLETE = re.compile(rb'data: ?\[DONE\]|"finish_reason"\s*:\s*"')


def data_event(data: bytes) -> bytes:
    """One event carrying ``data``, which must be a single line (serialized JSON is)."""
    return b"data: " + data + b"\n\n"


def chunk(payload: dict[str, Any]) -> bytes:
    """One OpenAI-style SSE event."""
    return data_event(orjson.dumps(payload))


def ends_event(sent: bytes) -> bool:
    """Whether the bytes relayed so far (their last four suffice) stop between events, so that
    an event written next stands on its own rather than ending a broken one."""
    return sent.endswith(_EVENT_ENDS)


class SSEFramer:
    """Cuts a byte stream, fed chunk by chunk (as a plugin's on_chunk sees it), into whole SSE
    events, each with its terminating blank line. The events do not depend on where the stream
    was cut: an end that stops at a CR at the end of the bytes so far waits for the next byte
    (a LF there belongs to the same line ending).

    An unfinished event is held as pieces and each new piece is searched only where an event
    end can be (itself and the 3 bytes before it), so an event sent in many pieces costs linear
    time, not the whole event searched again per piece; and at most MAX_EVENT bytes of it are
    held: an upstream that never ends its event fails the stream (UpstreamError 502) instead of
    filling the gateway's memory."""

    __slots__ = ("_held", "_size", "_tail")

    def __init__(self) -> None:
        self._held: list[bytes] = []  # the unfinished event, in pieces
        self._size = 0
        self._tail = b""  # its last 3 bytes, where an end that the next piece finishes starts

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._held:
            if _EVENT_END.search(self._tail + chunk) is None:  # no end yet: just hold it
                self._hold(chunk)
                return []
            chunk = b"".join(self._held) + chunk
            self._held, self._size, self._tail = [], 0, b""
        events, at, size = [], 0, len(chunk)
        while (m := _EVENT_END.search(chunk, at)) is not None:
            if m.end() == size and chunk.endswith(b"\r"):
                break  # "\r" + "\n" to come would be one line ending: wait for it
            events.append(chunk[at:m.end()])
            at = m.end()
        if at < size:
            self._hold(chunk[at:] if at else chunk)
        return events

    def _hold(self, piece: bytes) -> None:
        self._held.append(piece)
        self._size += len(piece)
        self._tail = (self._tail + piece)[-3:]
        if self._size > MAX_EVENT:
            self._held, self._size, self._tail = [], 0, b""
            raise UpstreamError(502, "server", f"an event of the upstream's stream is larger "
                                f"than {size_text(MAX_EVENT)} and does not end: the stream is cut")

    def rest(self) -> bytes:
        """Bytes of an event the stream never finished."""
        rest = b"".join(self._held)
        self._held, self._size, self._tail = [], 0, b""
        return rest


@dataclass(slots=True)
class Event:
    event: str | None
    data: str


def parse_event(raw: bytes) -> Event | None:
    """The ``event`` and ``data`` fields of one event as ``SSEFramer`` cuts it (several data
    lines join with newlines; comments are skipped); None when it has neither. Bytes that are
    not UTF-8 read as U+FFFD, so a garbled upstream byte cannot end the stream with a crash."""
    event: str | None = None
    data: list[str] = []
    for line in _LINE_END.split(raw.decode("utf-8", "replace")):
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
    return Event(event, "\n".join(data)) if data or event else None


async def events(chunks: AsyncIterator[bytes]) -> AsyncIterator[Event]:
    """Parse SSE from arbitrary byte chunks (events may span chunks; CRLF, LF or CR lines). A
    last event the stream did not finish with its blank line counts if it carries data."""
    framer = SSEFramer()
    async for piece in chunks:
        for raw in framer.feed(piece):
            if (event := parse_event(raw)) is not None:
                yield event
    if (event := parse_event(framer.rest())) is not None and event.data:
        yield event


def json_objects(framer: SSEFramer, chunk: bytes) -> list[dict[str, Any]]:
    """The JSON objects that the events ``chunk`` completes carry as data (``[DONE]``, empty
    and non-JSON data skipped): how the front doors read the chat chunks they translate."""
    out = []
    for raw in framer.feed(chunk):
        parsed = parse_event(raw)
        if parsed is None or not parsed.data or parsed.data.strip() == "[DONE]":
            continue
        try:
            payload = orjson.loads(parsed.data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(payload, dict):
            out.append(payload)
    return out


async def until_complete(chunks: AsyncIterator[bytes], marker: re.Pattern[bytes] = _COMPLETE,
                         what: str = "[DONE] or a finish_reason") -> AsyncIterator[bytes]:
    """Relay an SSE stream, and raise if the upstream closes it before it is complete (for an
    OpenAI-compatible stream: no `data: [DONE]` and no finish_reason; ``marker`` and ``what``
    say otherwise): a connection that merely closes is not an answer, and passing it on would
    look like one."""
    complete, tail, received = False, b"", 0
    try:
        async for piece in chunks:
            received += len(piece)
            if not complete:
                window = tail + piece  # the marker may straddle two pieces
                complete = marker.search(window) is not None
                tail = window[-32:]
            yield piece
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    if not complete:
        raise UpstreamError(502, "connection", f"upstream closed the stream after {received} "
                            f"bytes without {what}", from_upstream=False)
