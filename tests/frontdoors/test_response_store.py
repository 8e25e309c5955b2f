"""The Responses door's store (responses.db): conversations read back oldest first, per key,
readable while still queued for the writer, expired after the retention (and swept in the
background), kept whole while in use: storing a continuation extends the responses it
continues."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from gateway.frontdoors.response_store import ResponseStore
from gateway.store import responses_db

from ..store.ticks import Ticks

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path):
    clock = Clock()
    store = ResponseStore(str(tmp_path / "data" / responses_db.FILE), clock=clock)
    store.tick = Ticks()  # the sweeper sweeps once at first use, then waits for a step
    store.configure(30 * DAY)
    yield store, clock
    await store.aclose()


def put(store: ResponseStore, id: str, previous: str | None = None, owner: str = "alice"):
    return store.put(id, owner, previous, b'[{"type": "message", "id": "in-%s"}]' % id.encode(),
                     b'{"id": "%s", "output": []}' % id.encode())


async def written(*futures) -> None:
    for future in futures:
        await asyncio.wrap_future(future)


async def test_a_chain_reads_oldest_first_also_while_queued(store):
    """A continuation finds its ancestors at once (queued) and later (in the file)."""
    store, _ = store
    futures = [put(store, "r1"), put(store, "r2", "r1"), put(store, "r3", "r2")]
    assert [row.id for row in store.chain("alice", "r3")] == ["r1", "r2", "r3"]
    await written(*futures)
    assert store._pending == {}
    assert [row.id for row in store.chain("alice", "r3")] == ["r1", "r2", "r3"]
    assert [row.id for row in store.chain("alice", "r2")] == ["r1", "r2"]


async def test_another_owner_sees_nothing(store):
    store, _ = store
    await written(put(store, "r1"))
    assert store.chain("bob", "r1") == [] and store.get("bob", "r1") is None
    assert not await store.delete("bob", "r1")
    assert store.get("alice", "r1") is not None


async def test_expired_responses_are_invisible_then_swept(store):
    """Past the retention a response is gone for every lookup; the sweep deletes its row."""
    store, clock = store
    await written(put(store, "old"))
    clock.now += 31 * DAY
    await written(put(store, "new"))
    assert store.get("alice", "old") is None and store.chain("alice", "old") == []
    assert await store.sweep() == 1
    rows = sqlite3.connect(store.path).execute("SELECT id FROM responses").fetchall()
    assert rows == [("new",)]


async def test_continuing_a_conversation_extends_its_beginning(store):
    """A conversation continued on day 20 is whole on day 40 (each row would have expired
    on day 30 alone)."""
    store, clock = store
    await written(put(store, "r1"), put(store, "r2", "r1"))
    clock.now += 20 * DAY
    await written(put(store, "r3", "r2"))
    clock.now += 20 * DAY
    await store.sweep()
    assert [row.id for row in store.chain("alice", "r3")] == ["r1", "r2", "r3"]


async def test_a_deleted_ancestor_ends_the_history_there(store):
    store, _ = store
    await written(put(store, "r1"), put(store, "r2", "r1"), put(store, "r3", "r2"))
    assert await store.delete("alice", "r2")
    assert [row.id for row in store.chain("alice", "r3")] == ["r3"]
    assert store.chain("alice", "r2") == []


async def test_the_sweeper_runs_in_the_background(store):
    """The first use starts the supervised sweeper: it sweeps at once, then every ``every``."""
    store, clock = store
    await written(put(store, "r1"))
    clock.now += 31 * DAY
    store.tick.step()
    deadline = asyncio.get_running_loop().time() + 10  # bounded, even on a loaded machine
    while not store.swept and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert store.swept == 1
