"""AWS event-stream frames written, for the fake Bedrock and the decoder's tests: the inverse
of gateway/providers/eventstream.py, which only reads them. Written from the format (see that
module's docstring), independent of the decoder, so the two check each other."""

from __future__ import annotations

import struct
import uuid
import zlib
from typing import Any

# Header value types of the format.
TRUE, FALSE, INT32, BYTES, STRING, UUID = 0, 1, 4, 6, 7, 9
PRELUDE = 12  # total length, headers length, prelude CRC


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _header(name: str, value: Any) -> bytes:
    raw_name = name.encode("utf-8")
    head = struct.pack(">B", len(raw_name)) + raw_name
    if isinstance(value, bool):
        return head + struct.pack(">B", TRUE if value else FALSE)
    if isinstance(value, int):
        return head + struct.pack(">Bi", INT32, value)
    if isinstance(value, uuid.UUID):
        return head + struct.pack(">B", UUID) + value.bytes
    if isinstance(value, (bytes, bytearray)):
        return head + struct.pack(">BH", BYTES, len(value)) + bytes(value)
    raw = str(value).encode("utf-8")
    return head + struct.pack(">BH", STRING, len(raw)) + raw


def encode(headers: dict[str, Any], payload: bytes) -> bytes:
    """One frame (ints are encoded as int32, str as string, bytes as byte array)."""
    raw_headers = b"".join(_header(k, v) for k, v in headers.items())
    total = PRELUDE + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    body = prelude + struct.pack(">I", _crc(prelude)) + raw_headers + payload
    return body + struct.pack(">I", _crc(body))
