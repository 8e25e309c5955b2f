"""AWS event-stream binary framing (``application/vnd.amazon.eventstream``), as Bedrock's
ConverseStream sends it.

One message::

    total length  uint32 BE   (the whole message, these 4 bytes and the final CRC included)
    headers length uint32 BE
    prelude CRC   uint32 BE   (CRC32 of the 8 bytes above)
    headers       name length uint8, name, value type uint8, value
    payload       total - headers - 16 bytes
    message CRC   uint32 BE   (CRC32 of everything before it)

``Decoder`` is incremental: feed it byte chunks cut anywhere and it returns whole messages,
checking both CRCs and bounding what it buffers. The gateway only reads this format; the
tests' fake Bedrock writes it (tests/providers/eventstream_encode.py).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

PRELUDE = 12
MIN_MESSAGE = 16
MAX_MESSAGE = 16 * 1024 * 1024
MAX_HEADERS = 128 * 1024

_TRUE, _FALSE, _BYTE, _SHORT, _INT, _LONG, _BYTES, _STRING, _TIMESTAMP, _UUID = range(10)
_FIXED = {_BYTE: ">b", _SHORT: ">h", _INT: ">i", _LONG: ">q", _TIMESTAMP: ">q"}


class EventStreamError(ValueError):
    """Malformed framing: a bad CRC, an impossible length or an unknown header type."""


@dataclass(slots=True)
class Message:
    headers: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""

    @property
    def message_type(self) -> str:
        return str(self.headers.get(":message-type", "event"))

    @property
    def event_type(self) -> str | None:
        return self.headers.get(":event-type")


def _crc(data: bytes | bytearray | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def decode_headers(data: bytes | memoryview) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    view, i, end = memoryview(data), 0, len(data)
    try:
        while i < end:
            n = view[i]
            name = bytes(view[i + 1:i + 1 + n]).decode("utf-8")
            i += 1 + n
            kind = view[i]
            i += 1
            if kind in (_TRUE, _FALSE):
                value: Any = kind == _TRUE
            elif kind in _FIXED:
                fmt = _FIXED[kind]
                size = struct.calcsize(fmt)
                if i + size > end:
                    raise EventStreamError(f"header {name!r} runs past the headers")
                (value,) = struct.unpack_from(fmt, view, i)
                i += size
            elif kind in (_BYTES, _STRING):
                if i + 2 > end:
                    raise EventStreamError(f"header {name!r} runs past the headers")
                (size,) = struct.unpack_from(">H", view, i)
                raw = bytes(view[i + 2:i + 2 + size])
                if len(raw) != size:
                    raise EventStreamError(f"header {name!r} runs past the headers")
                value = raw.decode("utf-8") if kind == _STRING else raw
                i += 2 + size
            elif kind == _UUID:
                if i + 16 > end:
                    raise EventStreamError(f"header {name!r} runs past the headers")
                value = uuid.UUID(bytes=bytes(view[i:i + 16]))
                i += 16
            else:
                raise EventStreamError(f"unknown header value type {kind}")
            headers[name] = value
    except IndexError:
        raise EventStreamError("truncated headers") from None
    except UnicodeDecodeError:
        raise EventStreamError("header is not UTF-8") from None
    return headers


def decode_message(frame: bytes) -> Message:
    """One whole frame -> Message (CRCs checked)."""
    if len(frame) < MIN_MESSAGE:
        raise EventStreamError(f"a message is at least {MIN_MESSAGE} bytes, got {len(frame)}")
    total, headers_len, prelude_crc = struct.unpack_from(">III", frame, 0)
    if _crc(frame[:8]) != prelude_crc:
        raise EventStreamError("prelude CRC mismatch")
    if total != len(frame) or headers_len > total - MIN_MESSAGE:
        raise EventStreamError(f"bad lengths: total {total}, headers {headers_len}, frame {len(frame)}")
    (message_crc,) = struct.unpack_from(">I", frame, total - 4)
    if _crc(memoryview(frame)[:total - 4]) != message_crc:
        raise EventStreamError("message CRC mismatch")
    headers = decode_headers(memoryview(frame)[PRELUDE:PRELUDE + headers_len])
    return Message(headers, bytes(frame[PRELUDE + headers_len:total - 4]))


class Decoder:
    """Incremental: ``feed(chunk)`` returns the messages completed by that chunk."""

    def __init__(self, max_message: int = MAX_MESSAGE):
        self._buffer = bytearray()
        self._max = max_message

    def feed(self, chunk: bytes) -> list[Message]:
        self._buffer += chunk
        out: list[Message] = []
        while len(self._buffer) >= PRELUDE:
            total, headers_len, prelude_crc = struct.unpack_from(">III", self._buffer, 0)
            if _crc(self._buffer[:8]) != prelude_crc:
                raise EventStreamError("prelude CRC mismatch")
            if (total < MIN_MESSAGE or total > self._max
                    or headers_len > min(MAX_HEADERS, total - MIN_MESSAGE)):
                raise EventStreamError(f"bad lengths: total {total}, headers {headers_len}")
            if len(self._buffer) < total:
                break
            frame = bytes(self._buffer[:total])
            del self._buffer[:total]
            out.append(decode_message(frame))
        return out

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message (non-zero at the end of a stream: it was cut)."""
        return len(self._buffer)
