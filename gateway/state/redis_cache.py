"""The response cache in Redis (`server.state: redis://…`): one cache for every worker and
replica, on the same Redis and connection settings (URL, `socket_timeout`) as the limits.

Key layout (prefix ``gateway:cache``):
- ``e:{namespace}:{key}``  the entry (JSON: body, target, tokens, cost, created, expires),
  written with ``PX`` so Redis expires it; bounds are Redis's own (``maxmemory`` with an
  ``allkeys-lru`` or ``volatile-lru`` policy evicts the least recently used entries);
- ``c:{namespace}``  a hash of the namespace's hits, misses, saved_tokens, saved_usd;
- ``ns``  the set of namespaces seen (for stats and clear).

A cache that cannot be reached is a miss, never a failed request: lookups and writes that fail
(or take longer than the socket timeout) are logged once per outage and skipped.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import orjson

from ..logs import get_logger
from ..store.cache_db import Entry
from ..store.tasks import spawn
from .redis_counters import redact

log = get_logger("gateway.cache")

PREFIX = "gateway:cache"
DEFAULT_TIMEOUT = 0.05


def _zero() -> list[float]:
    return [0, 0, 0, 0.0]


def _errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, asyncio.TimeoutError)


def entry_key(namespace: str, key: str) -> str:
    return f"{PREFIX}:e:{namespace}:{key}"


def _group_key(namespace: str, group: str) -> str:
    return f"{PREFIX}:v:{namespace}:{group}"


def pack(entry: Entry) -> bytes:
    return orjson.dumps({"body": entry.body.decode(), "target": entry.target,
                         "prompt_tokens": entry.prompt_tokens,
                         "completion_tokens": entry.completion_tokens,
                         "cost_usd": entry.cost_usd, "created": entry.created,
                         "expires": entry.expires})


def unpack(raw: bytes) -> Entry:
    d = orjson.loads(raw)
    return Entry(d["body"].encode(), d["target"], d["prompt_tokens"], d["completion_tokens"],
                 d["cost_usd"], d["created"], d["expires"])


class RedisResponseCache:
    backend = "redis"

    def __init__(self, url: str):
        self.url = url
        query = parse_qs(urlsplit(url).query)
        self.timeout = (float(query["socket_timeout"][0]) if "socket_timeout" in query
                        else DEFAULT_TIMEOUT)
        self._redis: Any = None
        self._down = False
        self.totals: dict[str, list[float]] = defaultdict(_zero)  # this process, for /metrics
        self.swept = (0, 0)

    def configure(self, max_entries: int | None, max_bytes: int | None) -> None:
        """Bounds are Redis's own (maxmemory and its eviction policy)."""

    def _client(self) -> Any:  # redis.asyncio.Redis: its replies are typed bytes | str
        if self._redis is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._redis = Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0), health_check_interval=0)
        return self._redis

    def _failed(self, action: str, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.error("cache_unavailable", url=redact(self.url), action=action,
                      error=f"{type(exc).__name__}: {exc}")

    def _ok(self) -> None:
        if self._down:
            self._down = False
            log.info("cache_recovered", url=redact(self.url))

    async def _read(self, action: str, operation: Callable[[Any], Awaitable[Any]]) -> Any:
        """``operation(redis)``'s result; None when Redis fails (logged once per outage)."""
        try:
            result = await operation(self._client())
        except _errors() as exc:
            self._failed(action, exc)
            return None
        self._ok()
        return result

    async def get(self, namespace: str, key: str, now: float) -> Entry | None:
        raw = await self._read("get", lambda redis: redis.get(entry_key(namespace, key)))
        if raw is None:
            return None
        entry = unpack(raw)
        return entry if entry.expires > now else None

    def put(self, namespace: str, key: str, route: str, entry: Entry) -> asyncio.Task[Any]:
        return spawn(self._put(namespace, key, entry), "cache:put")

    async def _put(self, namespace: str, key: str, entry: Entry) -> None:
        ttl_ms = max(1, int((entry.expires - entry.created) * 1000))
        await self._send("put", lambda pipe: (
            pipe.set(entry_key(namespace, key), pack(entry), px=ttl_ms),
            pipe.sadd(f"{PREFIX}:ns", namespace)))

    async def _send(self, action: str, commands: Callable[[Any], object]) -> None:
        """Queue ``commands(pipeline)`` and send them in one round trip; a failure is logged
        (once per outage) and dropped: the cache never fails a request."""
        try:
            async with self._client().pipeline(transaction=False) as pipe:
                commands(pipe)
                await pipe.execute()
        except _errors() as exc:
            self._failed(action, exc)
            return
        self._ok()

    def count(self, namespace: str, hit: bool, saved_tokens: int = 0,
              saved_usd: float = 0.0) -> None:
        row = self.totals[namespace]
        row[0 if hit else 1] += 1
        row[2] += saved_tokens
        row[3] += saved_usd
        spawn(self._count(namespace, hit, saved_tokens, saved_usd), "cache:count")

    async def _count(self, namespace: str, hit: bool, saved_tokens: int, saved_usd: float) -> None:
        counts = f"{PREFIX}:c:{namespace}"

        def commands(pipe: Any) -> None:
            pipe.hincrby(counts, "hits" if hit else "misses", 1)
            if saved_tokens:
                pipe.hincrby(counts, "saved_tokens", saved_tokens)
            if saved_usd:
                pipe.hincrbyfloat(counts, "saved_usd", saved_usd)
            pipe.sadd(f"{PREFIX}:ns", namespace)

        await self._send("count", commands)

    # -- semantic mode: vectors ------------------------------------------------------------

    async def nearest(self, namespace: str, group: str, vector: Any) -> tuple[str, float] | None:
        """The closest stored prompt of ``group`` (every replica's), read from Redis at each
        lookup so that the search sees every entry; None when there is none or Redis fails."""
        rows = await self._read("nearest", lambda redis: redis.hgetall(_group_key(namespace, group)))
        if not rows:
            return None
        from .vector_index import Group

        return Group([(k.decode(), v) for k, v in rows.items()], 0.0).nearest(vector)

    def put_vector(self, namespace: str, key: str, group: str, vector: Any, ttl: float) -> None:
        spawn(self._put_vector(namespace, key, group, vector.tobytes(), ttl), "cache:vector")

    async def _put_vector(self, namespace: str, key: str, group: str, blob: bytes,
                          ttl: float) -> None:
        """The group's hash lives as long as its newest entry; a vector whose entry expired
        is found, then its entry is not (a miss), and it goes with the hash."""
        at, seconds = _group_key(namespace, group), max(1, int(ttl))
        await self._send("put_vector", lambda pipe: (
            pipe.hset(at, key, blob), pipe.expire(at, seconds, gt=True),
            pipe.expire(at, seconds, nx=True)))

    async def flush(self, now: float | None = None) -> None:
        """Nothing to flush: Redis expires and evicts entries itself."""

    async def aclose(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()


def redis_stats(url: str, namespace: str | None) -> list[dict[str, Any]]:
    """`gateway cache stats` on a Redis cache (a synchronous client: the CLI)."""
    redis = _sync(url)
    try:
        names = sorted(n.decode() for n in redis.smembers(f"{PREFIX}:ns"))
        out = []
        for ns in names if namespace is None else [namespace]:
            entries = size = 0
            for k in redis.scan_iter(match=f"{PREFIX}:e:{_glob(ns)}:*", count=1000):
                if not _of(k, ns):
                    continue  # a longer namespace's key that matched the pattern
                entries += 1
                size += redis.strlen(k)
            c = {k.decode(): v.decode() for k, v in redis.hgetall(f"{PREFIX}:c:{ns}").items()}
            out.append({"namespace": ns, "entries": entries, "bytes": size,
                        "hits": int(c.get("hits", 0)), "misses": int(c.get("misses", 0)),
                        "saved_tokens": int(c.get("saved_tokens", 0)),
                        "saved_usd": round(float(c.get("saved_usd", 0.0)), 6)})
        return out
    finally:
        redis.close()


def redis_clear(url: str, namespace: str | None) -> int:
    redis = _sync(url)
    try:
        names = ([n.decode() for n in redis.smembers(f"{PREFIX}:ns")] if namespace is None
                 else [namespace])
        deleted = 0
        for ns in names:
            doomed = [k for kind in ("e", "v")
                      for k in redis.scan_iter(match=f"{PREFIX}:{kind}:{_glob(ns)}:*", count=1000)
                      if _of(k, ns, kind)]
            if doomed:
                deleted += redis.delete(*doomed)
        return deleted
    finally:
        redis.close()


def _sync(url: str) -> Any:  # redis.Redis: its replies are typed bytes | str
    from redis import Redis

    return Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def _of(redis_key: bytes, namespace: str, kind: str = "e") -> bool:
    """Whether an entry's (or a vector group's) Redis key is in ``namespace`` (request and
    group keys are hex: no colon)."""
    return redis_key.decode().rsplit(":", 1)[0] == f"{PREFIX}:{kind}:{namespace}"


def _glob(text: str) -> str:
    """``text`` with Redis glob characters escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)

