"""AWS event-stream framing: botocore's published test messages, every header type, frames cut
anywhere, and corrupt input refused."""

from __future__ import annotations

import struct
import uuid
import zlib

import pytest

from gateway.providers.eventstream import (
    Decoder, EventStreamError, Message, decode_headers, decode_message,
)

from .eventstream_encode import encode

# From botocore's tests/unit/test_eventstream.py.
EMPTY_MESSAGE = b"\x00\x00\x00\x10\x00\x00\x00\x00\x05\xc2\x48\xeb\x7d\x98\xc8\xff"
INT8_HEADER = b"\x00\x00\x00\x17\x00\x00\x00\x07)\x86\x01X\x04byte\x02\xff\xc2\xf8i\xdc"
PAYLOAD_NO_HEADERS = b"\x00\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'}\xc3e96"


def frame(raw_headers: bytes, payload: bytes) -> bytes:
    """A frame built by hand (independent of encode) from raw header bytes."""
    prelude = struct.pack(">II", 16 + len(raw_headers) + len(payload), len(raw_headers))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def test_botocore_messages_decode():
    """The empty message, an int8 header and a payload without headers decode as botocore says."""
    assert decode_message(EMPTY_MESSAGE) == Message({}, b"")
    assert decode_message(INT8_HEADER) == Message({"byte": -1}, b"")
    assert decode_message(PAYLOAD_NO_HEADERS) == Message({}, b"{'foo':'bar'}")


def test_encode_matches_botocore_bytes():
    """encode produces exactly botocore's bytes for the messages it can express."""
    assert encode({}, b"") == EMPTY_MESSAGE
    assert encode({}, b"{'foo':'bar'}") == PAYLOAD_NO_HEADERS


def test_every_header_type():
    """bool, byte, short, int, long, bytes, string, timestamp and uuid headers decode."""
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    raw = (b"\x01t\x00" + b"\x01f\x01" + b"\x01b\x02\x7f" + b"\x01s\x03" + struct.pack(">h", -2)
           + b"\x01i\x04" + struct.pack(">i", 70000) + b"\x01l\x05" + struct.pack(">q", -(2**40))
           + b"\x01y\x06" + struct.pack(">H", 3) + b"\x00\x01\x02" + b"\x01z\x07" + struct.pack(">H", 2) + b"hi"
           + b"\x01d\x08" + struct.pack(">q", 1_700_000_000_000) + b"\x01u\x09" + ident.bytes)
    message = decode_message(frame(raw, b"payload"))
    assert message.headers == {"t": True, "f": False, "b": 127, "s": -2, "i": 70000, "l": -(2**40),
                               "y": b"\x00\x01\x02", "z": "hi", "d": 1_700_000_000_000, "u": ident}
    assert message.payload == b"payload"


def test_round_trip_and_accessors():
    """encode then decode gives the headers and payload back; message and event types read."""
    headers = {":message-type": "event", ":event-type": "contentBlockDelta", "n": 5, "ok": True,
               "raw": b"\x00\xff", "id": uuid.UUID(int=7)}
    message = decode_message(encode(headers, b'{"a":1}'))
    assert message.headers == headers and message.payload == b'{"a":1}'
    assert (message.message_type, message.event_type) == ("event", "contentBlockDelta")


def test_decoder_joins_frames_cut_anywhere():
    """Fed one byte at a time, or all at once, the decoder returns the same messages."""
    stream = encode({":event-type": "a"}, b"1") + EMPTY_MESSAGE + encode({":event-type": "b"}, b"22")
    whole = Decoder().feed(stream)
    assert [m.event_type for m in whole] == ["a", None, "b"]
    decoder, pieces = Decoder(), []
    for i in range(len(stream)):
        pieces += decoder.feed(stream[i:i + 1])
    assert pieces == whole and decoder.pending == 0


def test_decoder_reports_a_cut_message():
    """Bytes of an unfinished message stay pending (the stream was cut)."""
    decoder = Decoder()
    assert decoder.feed(PAYLOAD_NO_HEADERS[:20]) == [] and decoder.pending == 20


@pytest.mark.parametrize("position, match", [(9, "prelude CRC"), (-1, "message CRC"), (14, "message CRC")])
def test_corruption_is_detected(position, match):
    """A flipped bit in the prelude CRC, the message CRC or the payload is refused."""
    data = bytearray(PAYLOAD_NO_HEADERS)
    data[position] ^= 0x01
    with pytest.raises(EventStreamError, match=match):
        Decoder().feed(bytes(data))


def test_impossible_lengths_are_refused():
    """A total length below the minimum or above the bound is refused before buffering it."""
    small = struct.pack(">II", 8, 0)
    with pytest.raises(EventStreamError, match="bad lengths"):
        Decoder().feed(small + struct.pack(">I", zlib.crc32(small)))
    big = struct.pack(">II", 64 * 1024 * 1024, 0)
    with pytest.raises(EventStreamError, match="bad lengths"):
        Decoder().feed(big + struct.pack(">I", zlib.crc32(big)))


def test_unknown_header_type_is_refused():
    """A header value type outside 0-9 is malformed framing."""
    with pytest.raises(EventStreamError, match="unknown header value type"):
        decode_headers(b"\x01x\x0a")
    with pytest.raises(EventStreamError, match="runs past"):
        decode_headers(b"\x01x\x07\x00\x09ab")
