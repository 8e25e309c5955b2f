"""Server-sent events: parse an upstream's byte stream into events, write OpenAI chunks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, AsyncIterator

import orjson

from ..errors import UpstreamError

DONE = b"data: [DONE]\n\n"
_EVENT_END = re.compile(rb"(?>\r\n|\n|\r)(?>\r\n|\n|\r)")
# What ends an OpenAI-compatible stream: `data: [DONE]`, or a choice's (non-null) finish_reason.
_COMPLETE = re.compile(rb'data: ?\[DONE\]|"finish_reason"\s*:\s*"')


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


async def events(chunks: AsyncIterator[bytes]) -> AsyncIterator[Event]:
    """Parse SSE from arbitrary byte chunks (events may span chunks; CRLF or LF lines)."""
    buffer = b""
    event: str | None = None
    data: list[str] = []
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8")
            if not line:
                if data or event:
                    yield Event(event, "\n".join(data))
                event, data = None, []
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
    tail = buffer.rstrip(b"\r").decode("utf-8")
    if tail.startswith("data:"):
        data.append(tail[5:].lstrip(" "))
    if data:
        yield Event(event, "\n".join(data))


def chunk(payload: dict[str, Any]) -> bytes:
    """One OpenAI-style SSE event."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def until_complete(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Relay an OpenAI-compatible SSE stream, and raise if the upstream closes it before it is
    complete (no `data: [DONE]` and no finish_reason): a connection that merely closes is not
    an answer, and passing it on would look like one."""
    complete, tail, received = False, b"", 0
    try:
        async for piece in chunks:
            received += len(piece)
            if not complete:
                window = tail + piece  # the marker may straddle two pieces
                complete = _COMPLETE.search(window) is not None
                tail = window[-32:]
            yield piece
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    if not complete:
        raise UpstreamError(502, "connection", f"upstream closed the stream after {received} "
                            "bytes without [DONE] or a finish_reason", from_upstream=False)
