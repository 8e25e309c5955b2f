"""The framed encryption of stored files: a round trip of any length; frames moved, dropped,
cut off or under another file id fail; the files key lives in the vault and survives a
rotation of the master key."""

from __future__ import annotations

import asyncio
import io

import pytest

from gateway.files import crypt
from gateway.files.store import FILES_KEY_SECRET, FileStore, Owner
from gateway.vault import Vault

KEY = crypt.file_key(bytes(32), "file-a")


def sealed(data: bytes, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    writer = crypt.FrameWriter(out, key)
    for start in range(0, len(data), 10_000):
        writer.write(data[start:start + 10_000])
    writer.close()
    return out.getvalue()


def opened(blob: bytes, key: bytes = KEY) -> bytes:
    return b"".join(crypt.read_frames(io.BytesIO(blob), key))


@pytest.mark.parametrize("size", [0, 1, crypt.FRAME - 1, crypt.FRAME, crypt.FRAME + 1,
                                  3 * crypt.FRAME])
def test_round_trip(size):
    """Any length comes back as it was, across frame boundaries."""
    data = bytes(i % 251 for i in range(size))
    assert opened(sealed(data)) == data


def test_tampering_is_detected():
    """Swapped frames, a dropped last frame, a cut, a flipped bit, another file's key: all
    refused."""
    blob = sealed(b"x" * (3 * crypt.FRAME + 5))
    head, body = blob[:crypt.HEADER], blob[crypt.HEADER:]
    frames = [body[i:i + crypt.SEALED] for i in range(0, len(body), crypt.SEALED)]
    swapped = head + frames[1] + frames[0] + b"".join(frames[2:])
    dropped_last = head + b"".join(frames[:-1])
    cut = blob[:-7]
    flipped = bytearray(blob)
    flipped[crypt.HEADER + 100] ^= 1
    for bad in (swapped, dropped_last, cut, bytes(flipped)):
        with pytest.raises(crypt.DamagedFile):
            opened(bad)
    with pytest.raises(crypt.DamagedFile):
        opened(blob, crypt.file_key(bytes(32), "file-b"))


def test_files_survive_master_key_rotation(tmp_path, monkeypatch):
    """The files key is a vault secret: after `gateway secrets rotate-master` a new store
    still reads what was written before."""
    monkeypatch.delenv("GATEWAY_MASTER_KEY", raising=False)
    monkeypatch.delenv("GATEWAY_MASTER_PASSPHRASE", raising=False)

    async def write() -> dict:
        store = FileStore(str(tmp_path))
        upload = store.begin(Owner("o"), "a.txt", "user_data")
        upload.write(b"kept across rotations")
        record = await upload.commit()
        await store.aclose()
        return record

    async def read(record: dict) -> bytes:
        store = FileStore(str(tmp_path))
        try:
            return b"".join([chunk async for chunk in store.read(record)])
        finally:
            await store.aclose()

    record = asyncio.run(write())
    vault = Vault(str(tmp_path))
    assert FILES_KEY_SECRET in vault.names()
    before = (tmp_path / "master.key").read_text()
    vault.rotate()
    assert (tmp_path / "master.key").read_text() != before
    assert asyncio.run(read(record)) == b"kept across rotations"
