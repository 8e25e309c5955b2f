"""Files encrypted at rest in frames: what /v1/files keeps on disk.

A file is a header and a sequence of frames. The header is ``MAGIC`` and a random 16-byte
nonce prefix. Each frame is one SecretBox (XSalsa20-Poly1305) ciphertext of up to ``FRAME``
plaintext bytes, without its nonce: the nonce is the prefix, one byte saying whether the frame
is the last, and the frame's number (8 bytes, big-endian). Every frame but the last holds
exactly ``FRAME`` bytes, and the last always exists (empty when the plaintext is a multiple of
``FRAME``) and always holds fewer, so a reader knows a frame's length and whether it is the last
by its size alone. Frames moved, dropped, repeated or cut off fail to decrypt, and so does a
truncated file (its last frame lacks the "last" mark).

The key of a file is derived from the files key and the file's id (BLAKE2b keyed hash), so a
file copied under another id does not open either.
"""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO, Iterator

import nacl.exceptions
import nacl.secret
import nacl.utils

MAGIC = b"BGWF1\n"
PREFIX = 16  # random bytes of every nonce
FRAME = 64 * 1024  # plaintext bytes per frame
SEALED = FRAME + nacl.secret.SecretBox.MACBYTES  # a whole frame on disk
HEADER = len(MAGIC) + PREFIX


class DamagedFile(Exception):
    """A stored file that does not decrypt: edited, truncated, or under another key."""


def file_key(files_key: bytes, file_id: str) -> bytes:
    return hashlib.blake2b(file_id.encode(), key=files_key, digest_size=32,
                           person=b"bgw-file-v1").digest()


def _nonce(prefix: bytes, last: bool, number: int) -> bytes:
    return prefix + (b"\x01" if last else b"\x00") + number.to_bytes(7, "big")


class FrameWriter:
    """Encrypts what is written to ``out`` frame by frame; ``close()`` writes the last frame.
    At most one frame of plaintext is held in memory."""

    def __init__(self, out: BinaryIO, key: bytes):
        self.out = out
        self.box = nacl.secret.SecretBox(key)
        self.prefix = nacl.utils.random(PREFIX)
        self.number = 0
        self.size = 0  # plaintext bytes written
        self._buffer = bytearray()
        out.write(MAGIC + self.prefix)

    def write(self, data: bytes) -> None:
        self.size += len(data)
        self._buffer += data
        while len(self._buffer) > FRAME:  # a full frame that is known not to be the last
            self._seal(bytes(self._buffer[:FRAME]), last=False)
            del self._buffer[:FRAME]

    def close(self) -> None:
        if len(self._buffer) == FRAME:
            self._seal(bytes(self._buffer), last=False)
            self._buffer.clear()
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()

    def _seal(self, plain: bytes, last: bool) -> None:
        sealed = self.box.encrypt(plain, _nonce(self.prefix, last, self.number))
        self.out.write(sealed.ciphertext)
        self.number += 1


def read_frames(handle: BinaryIO, key: bytes) -> Iterator[bytes]:
    """The plaintext of a file written by FrameWriter, frame by frame; DamagedFile when any
    part of it does not decrypt or it ends early."""
    head = handle.read(HEADER)
    if len(head) != HEADER or not head.startswith(MAGIC):
        raise DamagedFile("not a gateway file (bad header)")
    prefix, box, number = head[len(MAGIC):], nacl.secret.SecretBox(key), 0
    while True:
        sealed = handle.read(SEALED)
        last = len(sealed) < SEALED
        try:
            plain = box.decrypt(sealed, _nonce(prefix, last, number))
        except (nacl.exceptions.CryptoError, ValueError):
            raise DamagedFile(f"frame {number} does not decrypt (the file was edited, cut "
                              "short or encrypted under another key)") from None
        if plain:
            yield plain
        if last:
            if handle.read(1):
                raise DamagedFile("data after the last frame")
            return
        number += 1


def new_files_key() -> str:
    """A random files key, as the vault stores it (hex)."""
    return os.urandom(nacl.secret.SecretBox.KEY_SIZE).hex()
