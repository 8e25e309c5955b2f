"""Micro-batching of embeddings: concurrent requests to one target merged into one upstream call.

A route with ``batch: {max_size, max_wait}`` gives each of its targets an ``EmbeddingBatcher``
(runtime state from the StateRegistry, keyed by provider, base_url, model and the policy, so a
reload that keeps them keeps the batcher). The target node hands it each embeddings attempt
instead of calling the provider itself:

- Requests that would send the same body upstream but for ``input`` (same provider object,
  model, ``dimensions``, ``encoding_format``, ``user``, override_params...) and the same kind
  of input (strings or token arrays) join one open group. The group is sent when it holds
  ``max_size`` inputs or ``max_wait`` after its first request came, whichever is first. A
  request that would overflow the open group sends that group first and opens the next one; a
  request of ``max_size`` inputs or more goes alone, as does a group of one request (its body
  is sent as the client sent it).
- The merged call's inputs are the members' inputs concatenated in arrival order. Its answer
  is split back by position: each member gets its own vectors, indexed from 0, in the order
  it sent them, and a share of ``usage``: the call's tokens split in proportion to each
  member's input size (characters for strings, ids for token arrays), rounded so that the
  shares add up to the call's tokens exactly.
- A failed merged call fails every member with the same error (each gets its own copy); each
  member's target node then retries or falls back on its own, as for any failed attempt, and
  a retry joins a new group. The target's circuit breaker counts the failure once, as the
  one upstream call it was. Except for 400, 413 and 422, which one member's input may have
  caused alone (too long, malformed): then each member sends its own request, so only that
  one fails.
- The merged call runs in a task of its own: a member whose client leaves, or whose own
  timeout passes first, stops waiting without cancelling the call for the others.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Hashable

import orjson

from ..errors import UpstreamError
from ..logs import get_logger
from ..types import Provider
from .base import Timeouts, UpstreamRequest, UpstreamResponse

log = get_logger("gateway.microbatch")

BATCH_HEADER = "x-gateway-batch"  # on a merged answer: how many requests shared the call
# Statuses of a merged call that may come from one member's input alone (too long, malformed):
# instead of failing them all, each member then sends its own request.
SPLIT_ON = frozenset({400, 413, 422})


@dataclass(slots=True)
class _Member:
    inputs: list[Any]
    weight: int
    timeouts: Timeouts
    future: asyncio.Future[UpstreamResponse | None]  # None: send your own request


@dataclass(slots=True)
class _Group:
    provider: Provider
    params: dict[str, Any]  # the body without its input
    members: list[_Member] = field(default_factory=list)
    size: int = 0  # inputs so far
    timer: asyncio.TimerHandle | None = None


class EmbeddingBatcher:
    """Merges concurrent embeddings attempts of one target (see the module's docstring).
    Counts what it did: ``calls`` upstream calls for ``requests`` requests that it merged."""

    def __init__(self, max_size: int, max_wait: float):
        self.max_size = max_size
        self.max_wait = max_wait
        self.calls = 0
        self.requests = 0
        self._open: dict[Hashable, _Group] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def send(self, provider: Provider, request: UpstreamRequest) -> UpstreamResponse:
        """The answer to ``request`` alone, from a merged call or from its own."""
        body = request.body
        inputs = _inputs(body.get("input"))
        if inputs is None or len(inputs) >= self.max_size or request.stream or request.files \
                or request.native is not None:
            return await provider.send(request)
        params = {k: v for k, v in body.items() if k != "input"}
        kind = "tokens" if isinstance(inputs[0], list) else "text"
        key = (provider, kind, orjson.dumps(params, option=orjson.OPT_SORT_KEYS))
        group = self._open.get(key)
        if group is not None and group.size + len(inputs) > self.max_size:
            self._flush(key, group)
            group = None
        if group is None:
            group = self._open[key] = _Group(provider, params)
            group.timer = asyncio.get_running_loop().call_later(
                self.max_wait, self._flush, key, group)
        member = _Member(inputs, sum(_weight(i) for i in inputs), request.timeouts,
                         asyncio.get_running_loop().create_future())
        group.members.append(member)
        group.size += len(inputs)
        if group.size >= self.max_size:
            self._flush(key, group)
        started = time.monotonic()
        try:
            async with asyncio.timeout(request.timeouts.total + self.max_wait):
                answer = await asyncio.shield(member.future)
        except TimeoutError:
            raise UpstreamError(408, "timeout", "no answer within "
                                f"{time.monotonic() - started:.3g}s (a batched call)",
                                from_upstream=False) from None
        except asyncio.CancelledError:  # the client left: out of a group not yet sent
            self._leave(key, group, member)
            raise
        if answer is None:  # alone in its group: its own call, as the client sent it
            return await provider.send(request)
        return answer

    def _leave(self, key: Hashable, group: _Group, member: _Member) -> None:
        if self._open.get(key) is not group or member not in group.members:
            return
        group.members.remove(member)
        group.size -= len(member.inputs)
        if not group.members:
            del self._open[key]
            if group.timer is not None:
                group.timer.cancel()

    def _flush(self, key: Hashable, group: _Group) -> None:
        if self._open.get(key) is group:
            del self._open[key]
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None
        if len(group.members) <= 1:
            for member in group.members:
                _resolve(member, None)
            return
        task = asyncio.get_running_loop().create_task(self._call(group))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _call(self, group: _Group) -> None:
        members = group.members
        self.calls += 1
        self.requests += len(members)
        merged = [item for m in members for item in m.inputs]
        timeouts = Timeouts(*(max(getattr(m.timeouts, f) for m in members)
                              for f in ("connect", "first_byte", "idle", "total")))
        try:
            response = await group.provider.send(UpstreamRequest(
                "embeddings", {**group.params, "input": merged}, False, timeouts))
            answers = split(response, members)
        except UpstreamError as err:
            if err.status in SPLIT_ON:  # maybe one member's input: each goes alone
                log.info("microbatch_split", members=len(members), status=err.status)
                for member in members:
                    _resolve(member, None)
                return
            for n, member in enumerate(members):
                _fail(member, _copy(err, shared=n > 0))  # one failure for the breaker
            return
        except Exception as exc:  # a bug must not leave the members waiting forever
            log.exception("microbatch_failed", members=len(members))
            for member in members:
                _fail(member, UpstreamError(502, "server", f"batched call failed: {exc!r}",
                                            from_upstream=False))
            return
        for member, answer in zip(members, answers):
            _resolve(member, answer)


def split(response: UpstreamResponse, members: list[_Member]) -> list[UpstreamResponse]:
    """One answer per member: its vectors, re-indexed from 0, and its share of the usage."""
    data = response.json()
    items = data.get("data") if isinstance(data, dict) else None
    total = sum(len(m.inputs) for m in members)
    if not isinstance(items, list) or len(items) != total \
            or not all(isinstance(i, dict) for i in items):
        raise UpstreamError(502, "server", f"the batched embeddings answer has "
                            f"{len(items) if isinstance(items, list) else 'no'} vectors for "
                            f"{total} inputs", from_upstream=False)
    if all(isinstance(i.get("index"), int) for i in items):
        items = sorted(items, key=lambda i: i["index"])
    usage = data.get("usage")
    weights = [m.weight for m in members]
    shares: dict[str, list[int]] = {}
    if isinstance(usage, dict):
        shares = {k: share(v, weights) for k, v in usage.items()
                  if isinstance(v, int) and not isinstance(v, bool)}
    headers = {**response.headers, BATCH_HEADER: str(len(members))}
    answers, start = [], 0
    for n, member in enumerate(members):
        mine = items[start:start + len(member.inputs)]
        start += len(member.inputs)
        value = {**data, "data": [{**item, "index": i} for i, item in enumerate(mine)]}
        if isinstance(usage, dict):
            value["usage"] = {**usage, **{k: v[n] for k, v in shares.items()}}
        answer = UpstreamResponse(response.status, media_type=response.media_type,
                                  headers=dict(headers), target=response.target)
        answer.set_json(value)
        answers.append(answer)
    return answers


def share(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder): the parts add up to
    ``total`` exactly."""
    whole = sum(weights)
    if whole <= 0:
        weights, whole = [1] * len(weights), len(weights)
    exact = [total * w / whole for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _inputs(value: Any) -> list[Any] | None:
    """The request's inputs as a list of items (strings or token arrays), or None when the
    request cannot be merged (no input, or none at all)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(i, int) for i in value):
        return [value]  # one token array
    if all(isinstance(i, str) for i in value) or all(isinstance(i, list) for i in value):
        return value
    return None


def _weight(item: Any) -> int:
    return max(1, len(item)) if isinstance(item, (str, list)) else 1


def _copy(err: UpstreamError, shared: bool) -> UpstreamError:
    """The same error as a new object (its class kept): each member raises its own, so one
    member's handling (the target named, a traceback added) never shows in another's.
    ``shared``: another member reports it to the circuit breaker."""
    new = Exception.__new__(type(err))
    new.args = err.args
    new.__dict__.update(err.__dict__)
    new.headers = dict(err.headers)
    new.shared = shared
    return new


def _resolve(member: _Member, answer: UpstreamResponse | None) -> None:
    if not member.future.done():
        member.future.set_result(answer)


def _fail(member: _Member, err: UpstreamError) -> None:
    if not member.future.done():
        member.future.set_exception(err)
        member.future.exception()  # retrieved: a member that left logs no "never retrieved"
