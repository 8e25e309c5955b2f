"""The embedded cache backend: LRU eviction within max_entries / max_size, expiry sweep."""

from __future__ import annotations

import asyncio

from gateway.state.response_cache import Entry, SqliteResponseCache


def entry(body: bytes, at: float, ttl: float = 100.0) -> Entry:
    return Entry(body, "demo/m", 1, 2, 0.0, at, at + ttl)


async def test_least_recently_used_entries_are_evicted_beyond_max_entries(tmp_path):
    """With room for 2, the entry neither stored nor read last is evicted at the next flush."""
    cache = SqliteResponseCache(str(tmp_path / "cache.db"))
    cache.configure(max_entries=2, max_bytes=None)
    try:
        for i, key in enumerate("abc"):
            await asyncio.wrap_future(cache.put("ns", key, "r", entry(key.encode(), 10.0 + i)))
        assert cache.lookup("ns", "a", 20.0) is not None  # a used at 20: b is now the oldest
        await cache.flush(now=21.0)
        assert cache.swept == (0, 1)
        assert [cache.lookup("ns", k, 22.0) is not None for k in "abc"] == [True, False, True]
    finally:
        await cache.aclose()


async def test_max_bytes_and_expiry(tmp_path):
    """Expired entries are deleted; then the oldest go until the bytes fit."""
    cache = SqliteResponseCache(str(tmp_path / "cache.db"))
    cache.configure(max_entries=None, max_bytes=250)
    try:
        await asyncio.wrap_future(cache.put("ns", "old", "r", entry(b"x" * 100, 1.0, ttl=5.0)))
        for i, key in enumerate("abc"):
            await asyncio.wrap_future(cache.put("ns", key, "r", entry(b"y" * 100, 10.0 + i)))
        await cache.flush(now=20.0)
        assert cache.swept == (1, 1)
        assert cache.stats(None, 20.0)[0]["bytes"] == 200
        assert cache.lookup("ns", "a", 20.0) is None and cache.lookup("ns", "c", 20.0) is not None
    finally:
        await cache.aclose()
