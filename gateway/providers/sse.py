"""Server-sent events, one framer for the whole gateway: cut a byte stream into events, read an
event's fields, write data events (OpenAI's chunks, ``[DONE]``, the server's mid-stream error
event), and tell whether an OpenAI-compatible stream ended complete."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, AsyncIterator

import orjson

from ..errors import UpstreamError

DONE = b"data: [DONE]\n\n"
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
    events, each with its terminating blank line."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        events, at = [], 0
        while (m := _EVENT_END.search(self._buffer, at)) is not None:
            events.append(self._buffer[at:m.end()])
            at = m.end()
        self._buffer = self._buffer[at:]
        return events

    def rest(self) -> bytes:
        """Bytes of an event the stream never finished."""
        rest, self._buffer = self._buffer, b""
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
