"""The built-in response cache (`cache:` in gateway.yaml, top level and per route).

A request middleware that answers a repeated request from the cache (a hit), and a response
middleware that stores a complete, successful answer (a miss). What applies to each route is
resolved when the config is compiled: a route with the cache off costs one dict lookup, and a
config with the cache off everywhere has no cache middleware at all.

- The key is a canonical hash of the body fields that change the answer (cache_key.py), the
  endpoint, the namespace and, on a route whose `conditional:` rules pick the target, the
  request fields those rules read (metadata, key name, parameters): requests routed to
  different branches never share an entry (branch_of). The namespace is the key's
  `metadata.cache_namespace`, else the config's `namespace`; an `x-gateway-cache-namespace`
  header narrows it further (it is appended, never replaces it), so a caller cannot read
  another key's namespace.
- `Cache-Control: no-store` bypasses the cache (skip); `no-cache` answers from upstream and
  stores the fresh answer in place of the old one (miss).
- Only 200 answers are stored, and for chat and completions only when every choice has a
  finish reason; a stream is stored once it ended with [DONE] (cache_replay.StreamRecorder).
- A hit costs nothing: ``ctx.cached`` tells usage accounting, and the cache counts hits,
  misses, saved tokens and saved USD per namespace (/metrics, `gateway cache stats`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson

from ..errors import GatewayError
from ..graph.conditions import field_getter, is_missing
from ..graph.context import RequestContext
from ..graph.graph import Route
from ..hookspecs import PluginContext
from ..pricing import Price
from ..providers.base import UpstreamResponse
from ..state.response_cache import Entry, ResponseCacheBackend, SqliteResponseCache
from ..store import cache_db
from ..types import walk
from ..units import seconds, size_bytes
from .cache_key import request_key
from .cache_replay import StreamRecorder, replay_chunks, stream_of
from .cache_semantic import DEFAULT_THRESHOLD, SemanticSettings, embed, split_prompt
from .limits_rules import target_prices

CACHEABLE = frozenset({"chat", "completions", "embeddings"})
DEFAULT_TTL = 3600.0
DEFAULT_NAMESPACE = "default"
DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_SIZE = "256MB"
HEADER = "x-gateway-cache"
SIMILARITY_HEADER = "x-gateway-cache-similarity"
NAMESPACE_HEADER = "x-gateway-cache-namespace"
MAX_NAMESPACE = 128
clock = time.time  # module level, so that a test can move time (TTL expiry)


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """A route's cache settings, resolved at compile time."""

    mode: str  # simple | semantic
    ttl: float
    namespace: str
    semantic: SemanticSettings | None = None  # with mode semantic


@dataclass(slots=True)
class CacheState:
    """This request's cache decision (kept in ctx, read on the way out)."""

    result: str  # hit | miss | skip
    namespace: str = ""
    key: str = ""
    ttl: float = 0.0
    recorder: StreamRecorder | None = None
    group: str = ""  # semantic mode: the request's group and its prompt's vector, to store
    vector: Any = None


SKIP = CacheState("skip")


def policies_of(config: Mapping[str, Any]) -> dict[str, CachePolicy]:
    """Route name -> policy, for the routes whose cache is on (route settings over top-level)."""
    top = config.get("cache") or {}
    out = {}
    for name, route in (config.get("routes") or {}).items():
        merged = {**top, **((route or {}).get("cache") or {})}
        mode = merged.get("mode", "off")
        if mode == "off":
            continue
        semantic = None
        if mode == "semantic":
            sem = {**(top.get("semantic") or {}), **(merged.get("semantic") or {})}
            if sem.get("route"):  # else the compiler has reported it
                semantic = SemanticSettings(sem["route"],
                                            float(sem.get("threshold", DEFAULT_THRESHOLD)))
        out[name] = CachePolicy(mode, seconds(merged.get("ttl", DEFAULT_TTL)),
                                str(merged.get("namespace", DEFAULT_NAMESPACE)), semantic)
    return out


def cache_backend(context: PluginContext) -> ResponseCacheBackend:
    """The process's cache backend (kept across reloads): Redis when `server.state` is a
    redis:// URL (the limits' connection settings), else cache.db in the data_dir."""
    state = (context.gateway_config.get("server") or {}).get("state", "sqlite")
    if isinstance(state, str) and state.startswith(("redis://", "rediss://")):
        from ..state.redis_cache import RedisResponseCache

        return context.state.acquire(("response-cache", state), lambda: RedisResponseCache(state))
    path = cache_db.path(context.data_dir)
    backend = context.state.acquire(("response-cache", path), lambda: SqliteResponseCache(path))
    top = context.gateway_config.get("cache") or {}
    backend.configure(int(top.get("max_entries", DEFAULT_MAX_ENTRIES)),
                      size_bytes(top.get("max_size", DEFAULT_MAX_SIZE)))
    return backend


Getter = Callable[[RequestContext], Any]


def branch_fields(route: Route) -> tuple[tuple[str, Getter], ...]:
    """The request fields that pick among the targets of ``route`` (what its `conditional:`
    rules read, route references followed), each with its getter; () when nothing does."""
    fields: dict[str, None] = {}
    for node in walk(route.node):
        if node.kind == "conditional":
            for rule in node.rules:  # type: ignore[attr-defined]  # a ConditionalNode
                fields.update(dict.fromkeys(f for f in rule.reads if f != "route"))
    return tuple((name, field_getter(name)) for name in fields)


def branch_of(fields: tuple[tuple[str, Getter], ...], ctx: RequestContext) -> bytes:
    """The values of ``fields`` for this request, as bytes for the cache key: a missing
    field and a null one differ."""
    values = [None if is_missing(value) else [value]
              for value in (get(ctx) for _, get in fields)]
    return orjson.dumps(values, option=orjson.OPT_SORT_KEYS, default=str)


class ResponseCache:
    def __init__(self, context: PluginContext, policies: dict[str, CachePolicy]):
        self.policies = policies
        self.backend = cache_backend(context)
        self.routes = context.routes  # the compiled routes: semantic mode embeds through one
        self.branches = {name: fields for name, route in context.routes.items()
                         if (fields := branch_fields(route))}
        self.prices: dict[str, Price] = target_prices(context.targets,
                                                      context.gateway_config.get("pricing"))

    # -- before -----------------------------------------------------------------------------

    async def on_request(self, ctx: RequestContext) -> UpstreamResponse | None:
        policy = self.policies.get(ctx.route)
        # A front door's native request (ctx.native) may be answered in its provider's own
        # shape, which the stored OpenAI form cannot hold: not cached.
        if policy is None or ctx.endpoint not in CACHEABLE or ctx.files or ctx.native:
            ctx.keep_state(SKIP)
            return None
        directives = _directives(ctx.headers.get("cache-control", ""))
        if "no-store" in directives:
            ctx.keep_state(SKIP)
            return None
        namespace = self._namespace(ctx, policy)
        fields = self.branches.get(ctx.route)
        branch = branch_of(fields, ctx) if fields else b""
        key = request_key(ctx.endpoint, namespace, ctx.body, branch)
        fresh = "no-cache" in directives
        if not fresh:
            entry = await self.backend.get(namespace, key, clock())
            if entry is not None:
                return self._hit(ctx, namespace, key, entry)
        state = CacheState("miss", namespace, key, policy.ttl,
                           StreamRecorder(ctx.endpoint) if ctx.stream else None)
        if policy.semantic is not None and ctx.endpoint == "chat":
            found = await self._similar(ctx, policy.semantic, state, fresh, branch)
            if found is not None:
                return found
        self.backend.count(namespace, hit=False)
        ctx.keep_state(state)
        return None

    async def _similar(self, ctx: RequestContext, settings: SemanticSettings, state: CacheState,
                       fresh: bool, branch: bytes) -> UpstreamResponse | None:
        """A hit on a similar request of the same group (semantic mode), or None; on the way,
        ``state`` learns the group and vector to store with the answer."""
        split = split_prompt(ctx.body)
        if split is None:
            return None
        text, rest = split
        vector = await embed(ctx, settings, self.routes, text)
        if vector is None:
            return None
        from ..state.vector_index import unit  # numpy: only semantic mode needs it

        state.group = request_key(ctx.endpoint, state.namespace, rest, branch)
        state.vector = unit(vector)
        if fresh:
            return None
        found = await self.backend.nearest(state.namespace, state.group, state.vector)
        if found is None or found[1] < settings.threshold:
            return None
        entry = await self.backend.get(state.namespace, found[0], clock())
        if entry is None:  # expired or evicted since
            return None
        response = self._hit(ctx, state.namespace, found[0], entry)
        response.headers[SIMILARITY_HEADER] = f"{min(found[1], 1.0):.4f}"
        return response

    def _namespace(self, ctx: RequestContext, policy: CachePolicy) -> str:
        key = ctx.key
        own = key.metadata.get("cache_namespace") if key is not None else None
        base = own if isinstance(own, str) and own else policy.namespace
        if "/" in base or "%" in base:  # '/' only ever joins a base and what a header asked
            base = base.replace("%", "%25").replace("/", "%2F")
        asked = ctx.headers.get(NAMESPACE_HEADER)
        if not asked:
            return base
        if len(asked) > MAX_NAMESPACE or not asked.isprintable():
            raise GatewayError(400, f"{NAMESPACE_HEADER} must be printable text of at most "
                               f"{MAX_NAMESPACE} characters", code="invalid_cache_namespace")
        return f"{base}/{asked}"

    def _hit(self, ctx: RequestContext, namespace: str, key: str, entry: Entry) -> UpstreamResponse:
        self.backend.count(namespace, hit=True,
                           saved_tokens=entry.prompt_tokens + entry.completion_tokens,
                           saved_usd=entry.cost_usd)
        ctx.cached = True
        ctx.target = entry.target
        ctx.keep_state(CacheState("hit", namespace, key))
        age = max(0, int(clock() - entry.created))
        headers = {HEADER: "hit", "age": str(age)}
        if not ctx.stream:
            return UpstreamResponse(200, body=entry.body, headers=headers, target=entry.target)
        answer = orjson.loads(entry.body)
        options = ctx.body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        chunks = replay_chunks(ctx.endpoint, answer, include_usage)
        return UpstreamResponse(200, stream=stream_of(chunks), media_type="text/event-stream",
                                headers=headers, target=entry.target)

    # -- after ------------------------------------------------------------------------------

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> UpstreamResponse:
        state = ctx.state_for(CacheState) or SKIP
        if state.result == "miss":
            answer = _complete(ctx.endpoint, response)
            if answer is not None and response.body is not None:  # _complete needs a body
                self._store(ctx, state, response.target or ctx.target, response.body, answer)
        return response

    def on_chunk(self, ctx: RequestContext, chunk: bytes) -> bytes:
        state = ctx.state_for(CacheState)
        if state is not None and state.recorder is not None:
            state.recorder.feed(chunk)
        return chunk

    def on_stream_end(self, ctx: RequestContext) -> bytes:
        state = ctx.state_for(CacheState)
        if state is not None and state.recorder is not None:
            answer = state.recorder.answer()
            if answer is not None:
                self._store(ctx, state, ctx.target, orjson.dumps(answer), answer)
        return b""

    def _store(self, ctx: RequestContext, state: CacheState, target: str, body: bytes,
               answer: dict) -> None:
        found = answer.get("usage")
        usage: dict[str, Any] = found if isinstance(found, dict) else {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        price = self.prices.get(target)
        cost = price.cost(usage) if price is not None else 0.0
        now = clock()
        entry = Entry(body, target, prompt, completion, cost, now, now + state.ttl)
        self.backend.put(state.namespace, state.key, ctx.route, entry)
        if state.vector is not None:
            self.backend.put_vector(state.namespace, state.key, state.group, state.vector,
                                    state.ttl)


def _complete(endpoint: str, response: UpstreamResponse) -> dict | None:
    """The answer's JSON when it is a complete, successful one worth storing; else None."""
    if response.status != 200 or response.body is None:
        return None
    answer = response.json()
    if not isinstance(answer, dict) or "error" in answer:
        return None
    if endpoint == "embeddings":
        return answer if answer.get("data") else None
    choices = answer.get("choices")
    if not choices or any(not isinstance(c, dict) or c.get("finish_reason") is None
                          for c in choices):
        return None
    return answer


def _directives(value: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in value.split(",") if part.strip())
