"""Counters in Redis (`server.state: redis://host:port/db`): every rate limit, budget, gauge and
alert marker shared by all workers and replicas, checked and added in one Lua script (see
redis_scripts.py for the key layout), so N replicas enforce one limit.

Every call has a short socket timeout (connect and read, 50 ms by default; a `socket_timeout`
in the URL's query string wins). When Redis does not answer, the gateway follows
`server.state_outage`:

- ``local``: serve from an embedded MemoryCounters whose limits are divided by ``share``
  (replicas × workers), seeded with the last usage this process read from Redis (divided the
  same way), so the fleet together stays within the limit give or take what it spent since
  those reads. Whatever is spent locally is also remembered as pending deltas; when Redis
  answers again they are added to it in one batch, exactly once (the batch carries an id that
  Redis records), then Redis is the source of truth again.
- ``closed``: ``reserve`` raises StateUnavailable (a 503); settling (``adjust``) is still
  kept and reconciled later, and alert markers are handled locally.

While Redis is down it is tried again at most once a second (one probe at a time); other
calls do not pay the timeout. ``state_outage`` and ``state_recovered`` are logged once per
transition; ``healthy`` and ``status()`` feed /readyz and /metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import math
import time
import uuid
from typing import TYPE_CHECKING, Any, Awaitable, Callable, cast
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ..errors import GatewayError
from ..logs import get_logger
from ..units import iso_utc
from .counters import (
    Counters,
    Limit,
    MemoryCounters,
    Verdict,
    bucket_of,
    retry_after,
    sliding_usage,
)
from .redis_scripts import ADJUST, RESERVE

if TYPE_CHECKING:
    from redis.asyncio import Redis

_SHA = {source: hashlib.sha1(source.encode()).hexdigest() for source in (ADJUST, RESERVE)}

log = get_logger("gateway.state")

RETRY_EVERY = 1.0  # seconds between attempts to reach Redis while it is down
CHECK_EVERY = 1.0  # /readyz pings an idle, healthy Redis at most this often
FIXED_TTL = 400 * 86400  # budgets and alert markers: a period that is long over
MARKER_TTL = 86400  # reconciliation batch ids
MAX_IN_FLIGHT = 64  # Redis calls at once per process; more wait their turn (not an outage)
MAX_REMEMBERED = 10_000  # last-read usages kept to seed local counters at an outage
MAX_PENDING = 4096  # pending deltas before expired sliding buckets are dropped


class StateUnavailable(GatewayError):
    """Redis is unreachable and `server.state_outage` is `closed`: a limited request gets 503."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "rate limits and budgets cannot be checked right now: the shared state (Redis) is "
            "unreachable and server.state_outage is 'closed'; retry shortly",
            type="service_unavailable", code="state_unavailable", headers={"Retry-After": "1"})


def client_installed() -> bool:
    """Whether the redis package, an optional extra (``bodhi-gateway[redis]``), is there."""
    return importlib.util.find_spec("redis") is not None


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, asyncio.TimeoutError)


def redact(url: str) -> str:
    """The URL without its password (for logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


class _Local(MemoryCounters):
    """The stand-in during an outage: MemoryCounters, plus the usage seen last in Redis."""

    def seed(self, limit: Limit, bucket: int, prev: float, curr: float) -> None:
        ratio = self.cap(limit) / limit.limit if limit.limit else 1.0
        if limit.window:
            self.buckets[(limit.key, bucket - 1)] = prev * ratio
            self.buckets[(limit.key, bucket)] = curr * ratio
        else:
            self.totals[limit.key] = curr * ratio


class RedisCounters(Counters):
    backend = "redis"

    def __init__(self, url: str, *, outage: str = "local", share: int = 1, timeout: float = 0.05,
                 prefix: str = "gateway") -> None:
        self.url = url
        self.outage = outage
        self.share = max(1, int(share))
        self.prefix = prefix
        query = parse_qs(urlsplit(url).query)
        self.timeout = float(query["socket_timeout"][0]) if "socket_timeout" in query else timeout
        self._redis: Redis | None = None
        self._slots: asyncio.Semaphore | None = None
        self._healthy = True
        self._down_since: float | None = None  # wall clock, for status()
        self._retry_at = 0.0  # monotonic
        self._probing = False
        self._last_ok = 0.0  # monotonic time of the last answer
        self._error = ""
        self.outages = 0
        self.local = _Local(self.share)
        self._seen: dict[str, tuple[Limit, int, float, float]] = {}
        self._pending: dict[str, list[Any]] = {}  # redis key -> [amount, expires_at | None, ttl, clamp]
        self._batch: tuple[str, dict[str, list[Any]]] | None = None
        self._reconciling = False

    # -- settings, status ------------------------------------------------------------------

    def configure(self, *, outage: str | None = None, share: int | None = None) -> None:
        """Apply `server.state_outage` / replicas × workers of a reloaded config."""
        if outage is not None:
            self.outage = outage
        if share is not None:
            self.share = self.local.share = max(1, int(share))

    @property
    def healthy(self) -> bool:
        return self._healthy

    def status(self) -> dict[str, Any]:
        """For /readyz (unauthenticated: no address, no error text — those are in the log)."""
        since = self._down_since
        return {
            "backend": self.backend,
            "healthy": self._healthy,
            "mode": self.outage,
            "share": self.share,
            "down_since": iso_utc(since) if since is not None else None,
            "pending_deltas": len(self._pending) + (len(self._batch[1]) if self._batch else 0),
            "outages": self.outages,
        }

    async def refresh(self) -> None:
        """Ping Redis when due — while down at most once a second, while healthy when nothing
        answered for a second — reconciling pending deltas, so /readyz tells the truth
        without traffic."""
        if self._healthy and time.monotonic() - self._last_ok < CHECK_EVERY:
            return
        await self._call(lambda redis: redis.ping(), time.time())

    # -- the interface -----------------------------------------------------------------------

    async def reserve(self, items: list[tuple[Limit, float]], now: float) -> Verdict:
        if not items:
            return Verdict(True)
        answered, result = await self._call(lambda redis: self._reserve(redis, items, now), now)
        if answered:
            return cast(Verdict, result)  # what _reserve returned
        if self.outage == "closed" and any(limit.kind != "alert" for limit, _ in items):
            raise StateUnavailable()
        verdict = self.local.reserve_now(items, now)
        if verdict.allowed:
            self._note(items, now)
        return verdict

    async def adjust(self, items: list[tuple[Limit, float]], now: float) -> None:
        items = [(limit, amount) for limit, amount in items if amount]
        if not items:
            return
        keys, args = [], ["0"]
        for limit, amount in items:
            keys.append(self._key(limit, now))
            args += [repr(float(amount)), str(self._ttl(limit)), "0" if limit.window else "1"]
        answered, _ = await self._call(lambda redis: self._script(redis, ADJUST, keys, args), now)
        if not answered:
            self.local.adjust_now(items, now)
            self._note(items, now)

    async def total(self, limit: Limit, now: float) -> float:
        keys = [self._key(limit, now)] + ([self._key(limit, now, -1)] if limit.window else [])
        answered, values = await self._call(lambda redis: redis.mget(keys), now)
        if answered:
            curr = float(values[0] or 0)
            prev = float(values[1] or 0) if limit.window else 0.0
            self._remember(limit, now, prev, curr)
            return sliding_usage(prev, curr, now, limit.window) if limit.window else curr
        # The local counters hold this replica's part: scaled back up, as if every replica
        # spent like this one (what budget alerts compare with).
        local = await self.local.total(limit, now)
        cap = self.local.cap(limit)
        return local * limit.limit / cap if cap else local

    async def aclose(self) -> None:
        """Send what is still pending (one try), then close the connections."""
        if self._pending or self._batch:
            try:
                await self._flush(self._client(), time.time())
            except _unavailable_errors() as exc:
                log.error("state_pending_lost", backend=self.backend, url=redact(self.url),
                          deltas=len(self._pending) + (len(self._batch[1]) if self._batch else 0),
                          error=_describe(exc))
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

    # -- Redis -------------------------------------------------------------------------------

    def _client(self) -> Redis:
        if self._redis is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._redis = Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0), max_connections=MAX_IN_FLIGHT,
                health_check_interval=0)
        return self._redis

    def _slot(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        return self._slots

    async def _call(self, operation: Callable[[Redis], Awaitable[Any]],
                    now: float) -> tuple[bool, Any]:
        """Run ``operation(redis)`` (after sending pending deltas) when it is this call's turn
        to use Redis: (True, its result), or (False, None) when Redis is down or failed."""
        turn = self._take_turn()
        if turn is None:
            return False, None
        try:
            async with self._slot():
                if turn == "call" and not self._healthy:
                    return False, None  # it went down while this call waited for a slot
                redis = self._client()
                await self._flush(redis, now)
                result = await operation(redis)
        except _unavailable_errors() as exc:
            self._failed(exc)
            return False, None
        finally:
            if turn == "probe":
                self._probing = False
        self._answered()
        return True, result

    async def _script(self, redis: Redis, source: str, keys: list[str], args: list[str]) -> Any:
        """EVALSHA, falling back to EVAL (which also caches the script) when Redis lacks it."""
        from redis.exceptions import NoScriptError

        try:
            return await redis.evalsha(_SHA[source], len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(source, len(keys), *keys, *args)

    async def _reserve(self, redis: Redis, items: list[tuple[Limit, float]], now: float) -> Verdict:
        keys: list[str] = []
        args = [str(len(items))]
        for limit, amount in items:
            keys.append(self._key(limit, now))
            if limit.window:
                keys.append(self._key(limit, now, -1))
                weight = 1.0 - (now % limit.window) / limit.window
            else:
                weight = -1.0
            args += [repr(weight), repr(float(limit.limit)), repr(float(amount)),
                     str(self._ttl(limit)), "0" if limit.window else "1"]
        result = await self._script(redis, RESERVE, keys, args)
        blocked = int(result[0])
        values = [float(v) for v in result[1:]]
        verdict = Verdict(True)
        refusal = None
        for i, (limit, amount) in enumerate(items):
            prev, curr = values[2 * i], values[2 * i + 1]
            cap = limit.limit
            used = sliding_usage(prev, curr, now, limit.window) if limit.window else curr
            if blocked == i + 1:
                wait = (retry_after(prev, curr, amount, cap, now, limit.window)
                        if limit.window else math.inf)
                refusal = Verdict(False, limit, wait, {limit: max(0.0, cap - used)},
                                  {limit: wait})
            elif not blocked:
                verdict.remaining[limit] = max(0.0, cap - used - amount)
                verdict.resets[limit] = ((limit.window - now % limit.window) if limit.window
                                         else 0.0)
            self._remember(limit, now, prev, curr + (0.0 if blocked else amount))
        return refusal or verdict

    def _key(self, limit: Limit, now: float, offset: int = 0) -> str:
        if limit.window:
            return f"{self.prefix}:{limit.key}:{bucket_of(now, limit.window) + offset}"
        return f"{self.prefix}:{limit.key}"

    @staticmethod
    def _ttl(limit: Limit) -> int:
        """Seconds a counter outlives its last write (0: forever)."""
        if limit.window:
            return math.ceil(2 * limit.window) + 1
        if limit.kind == "parallel" or limit.key.endswith(":total"):
            return 0
        return FIXED_TTL

    # -- outage and recovery --------------------------------------------------------------------

    def _take_turn(self) -> str | None:
        """Whether this call goes to Redis: "call" while healthy; while down, "probe" for one
        call at a time, at most once every RETRY_EVERY seconds; else None (stay local)."""
        if self._healthy:
            return "call"
        if self._probing or time.monotonic() < self._retry_at:
            return None
        self._probing = True
        self._retry_at = time.monotonic() + RETRY_EVERY
        return "probe"

    def _answered(self) -> None:
        self._last_ok = time.monotonic()
        if self._healthy:
            return
        down_for = time.time() - (self._down_since or time.time())
        self._healthy, self._down_since, self._error = True, None, ""
        self.local = _Local(self.share)  # what it held is in Redis now
        log.warning("state_recovered", backend=self.backend, url=redact(self.url),
                    mode=self.outage, down_seconds=round(down_for, 3))

    def _failed(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + RETRY_EVERY
        self._error = _describe(exc)
        if not self._healthy:
            return
        self._healthy = False
        self._down_since = time.time()
        self.outages += 1
        self.local = _Local(self.share)
        for limit, bucket, prev, curr in self._seen.values():
            self.local.seed(limit, bucket, prev, curr)
        log.error("state_outage", backend=self.backend, url=redact(self.url), mode=self.outage,
                  share=self.share, error=self._error,
                  consequence=("serving on local counters, each limit divided by "
                               f"{self.share}" if self.outage == "local"
                               else "limited requests get 503"))

    def _remember(self, limit: Limit, now: float, prev: float, curr: float) -> None:
        if len(self._seen) >= MAX_REMEMBERED and limit.key not in self._seen:
            self._seen.clear()
        bucket = bucket_of(now, limit.window) if limit.window else 0
        self._seen[limit.key] = (limit, bucket, prev, curr)

    def _note(self, items: list[tuple[Limit, float]], now: float) -> None:
        """Remember what was spent locally, to add it to Redis when it is back."""
        for limit, amount in items:
            if not amount:
                continue
            key = self._key(limit, now)
            entry = self._pending.get(key)
            if entry is None:
                expires = ((bucket_of(now, limit.window) + 2) * limit.window + 1
                           if limit.window else None)
                entry = self._pending[key] = [0.0, expires, self._ttl(limit),
                                              "0" if limit.window else "1"]
            entry[0] += amount
        if len(self._pending) > MAX_PENDING:
            for key in [k for k, e in self._pending.items() if e[1] is not None and e[1] <= now]:
                del self._pending[key]

    async def _flush(self, redis: Redis, now: float) -> None:
        """Add the pending local deltas to Redis, exactly once: they move into a batch with an
        id before sending; a batch whose send fails is kept and sent again with the same id,
        which Redis remembers (so a batch applied but unanswered is not applied twice)."""
        if self._reconciling or not (self._pending or self._batch):
            return
        self._reconciling = True
        try:
            for _ in range(2):  # the batch kept from a failed send, then what is pending now
                if self._batch is None:
                    if not self._pending:
                        return
                    self._batch, self._pending = (uuid.uuid4().hex, self._pending), {}
                batch = self._batch
                batch_id, deltas = batch
                keys = [f"{self.prefix}:reconciled:{batch_id}"]
                args = [str(MARKER_TTL)]
                for key, (amount, expires, ttl, clamp) in deltas.items():
                    if expires is not None:  # a sliding bucket: only while it still counts
                        ttl = math.ceil(expires - now)
                        if ttl <= 0:
                            continue
                    keys.append(key)
                    args += [repr(float(amount)), str(ttl), clamp]
                applied = await self._script(redis, ADJUST, keys, args)
                if self._batch is batch:
                    self._batch = None
                log.info("state_reconciled", backend=self.backend, batch=batch_id,
                         counters=len(keys) - 1, applied=bool(int(applied)))
        finally:
            self._reconciling = False


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
