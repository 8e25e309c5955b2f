"""What interrupted uploads leave in the data directory (contents without a record, records
without contents) is swept: by FileStore.sweep, and by the gateway at start-up; a file being
written, or written recently (perhaps by another process), is never touched."""

from __future__ import annotations

import os
import time

from gateway.files.store import ORPHAN_AGE, FileStore, Owner

from ..inprocess_gateway import poll

OWNER = Owner("a" * 64, "alice")


def age(path, seconds: float = 2 * ORPHAN_AGE) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def stored(store: FileStore, name: str, data: bytes) -> dict:
    upload = store.begin(OWNER, name, "user_data")
    upload.write(data)
    return await upload.commit()


async def test_sweep_removes_only_orphans(tmp_path):
    store = FileStore(str(tmp_path / "data"))
    try:
        kept = await stored(store, "kept.txt", b"kept")
        age(os.path.join(store.blobs, kept["id"]))  # old but recorded: kept
        gone = await stored(store, "gone.txt", b"gone")
        os.unlink(os.path.join(store.blobs, gone["id"]))  # a record without contents
        writing = store.begin(OWNER, "slow.txt", "user_data")
        writing.write(b"x" * 100)
        age(writing.path)  # old, but this process is writing it
        partial = os.path.join(store.blobs, "file-partial")  # a killed upload's contents
        with open(partial, "wb") as handle:
            handle.write(b"BGWF1\n" + b"\0" * 40)
        age(partial)
        fresh = os.path.join(store.blobs, "file-fresh")  # maybe another process's upload
        with open(fresh, "wb") as handle:
            handle.write(b"BGWF1\n")

        assert await store.sweep() == {"contents": ["file-partial"], "records": [gone["id"]]}
        assert not os.path.exists(partial) and os.path.exists(fresh)
        assert await store.get(gone["id"], OWNER) is None
        assert b"".join([c async for c in store.read(kept)]) == b"kept"
        writing.write(b"y")
        record = await writing.commit()
        assert b"".join([c async for c in store.read(record)]) == b"x" * 100 + b"y"
        assert await store.sweep() == {"contents": [], "records": []}
    finally:
        await store.aclose()


async def plant(data_dir) -> tuple[str, str]:
    """A data directory as a killed gateway leaves it: an old partial upload and a record
    whose contents are gone. Their names."""
    store = FileStore(str(data_dir))
    try:
        record = await stored(store, "lost.txt", b"lost")
        os.unlink(os.path.join(store.blobs, record["id"]))
        partial = os.path.join(store.blobs, "file-killed")
        with open(partial, "wb") as handle:
            handle.write(b"BGWF1\n" + b"\0" * 40)
        age(partial)
    finally:
        await store.aclose()
    return partial, record["id"]


async def test_gateway_sweeps_at_start(gateway_app, tmp_path):
    data = tmp_path / "data"
    partial, lost = await plant(data)
    gw = gateway_app(f'version: 1\nserver: {{data_dir: "{data}"}}\nproviders:\n'
                     "  demo: {type: mock}\nroutes:\n  r: {target: {provider: demo, model: m}}\n")
    poll(lambda: os.path.exists(partial), lambda there: not there, 10,
         "the partial upload was not swept")
    assert gw.get(f"/v1/files/{lost}").status_code == 404
