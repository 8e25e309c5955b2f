"""Mid-stream rescue, opt-in per route (`stream_recovery: {mode: continue}`).

Without it, a stream that breaks after bytes reached the client ends with an SSE error event:
fallback and retry can only act before the first byte. With it, when a chat stream breaks
(the connection is cut, the stream closes unfinished, an event is malformed or is an error
event) or stalls (no data within `stall_timeout`, or the target's `timeout.idle`), the
gateway asks a target of the route to continue from the text the client already has, and
streams only the new text:

- the target: the one after the broken one in the route's targets (config order, wrapping
  around; a route of one target asks that target again), skipping targets that are
  unavailable (open circuit, failing health checks);
- the request: the client's, plus the text sent so far as a final assistant message — a
  prefill, for providers that continue one (``Provider.accepts_prefill``) — or followed by a
  user message asking to continue exactly where it stops (the prompt form). A prefill refused
  with a 4xx is asked again once in the prompt form; a prompt form refused with a 4xx ends the
  stream with the error event;
- the answer: one stream for the client. The continuation's chunks carry the first stream's
  id, created, model and system_fingerprint, its role delta and reasoning are dropped, a repeat
  of text already sent is trimmed (stream_seam.py), its usage chunk counts every attempt, and
  `: x-gateway-stream-recovered attempts=N` comes just before `data: [DONE]`.

Streams that cannot be continued keep the error event: tool calls (a half-sent call cannot be
continued), several choices (``n`` > 1), an answer that already had its finish_reason, and
restarts used up (``max_restarts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, AsyncGenerator, AsyncIterator, ClassVar

import orjson

from ..errors import UpstreamError
from ..providers.base import UpstreamResponse
from ..providers.sse import DONE, SSEFramer, data_event, parse_event
from ..types import Node, walk
from .context import RequestContext
from .nodes import TargetNode
from .stream_seam import Seam

CONTINUE_PROMPT = ("Your previous reply was cut off. Continue it exactly from where it stops, "
                   "mid-word or mid-sentence if need be. Write only the rest: repeat nothing, "
                   "add no preamble.")
# Usage of a broken attempt that reported none is estimated: one token per content event
# (as limits.py does for a stream without usage), and its prompt as the last attempt's less
# what the gateway added to it (the sent text, a token per event; the continue prompt, 4
# characters a token).
_CHARS_PER_TOKEN = 4
_HEAD = ("id", "created", "model", "system_fingerprint")  # what the client's chunks keep
_DROPPED = ("role", "reasoning_content", "reasoning")  # said once already, or a new thought
FORMS = ("auto", "prefill", "prompt")


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    """A route's `stream_recovery` (mode: continue), compiled."""

    max_restarts: int = 1
    stall_timeout: float | None = None  # None: the targets' timeout.idle alone
    continue_with: str = "auto"  # auto | prefill | prompt


@dataclass(frozen=True, slots=True)
class StreamRecoveryNode:
    """Wraps a route's node: a chat stream it answers with is relayed through a rescue.

    ``targets`` are the targets the route reaches, in config order: who may continue."""

    kind: ClassVar[str] = "stream_recovery"
    path: str
    node: Node
    policy: RecoveryPolicy
    targets: tuple[TargetNode, ...]

    def children(self) -> tuple[Node, ...]:
        return (self.node,)

    def available(self, now: float) -> bool:
        check = getattr(self.node, "available", None)
        return check(now) if check is not None else True

    async def handle(self, ctx: RequestContext) -> UpstreamResponse:
        response = await self.node.handle(ctx)
        # Chat chunks only: a front door's native stream (Anthropic's events, OpenAI's
        # Responses events) is relayed as it came.
        if (response.stream is not None and ctx.stream and ctx.endpoint == "chat"
                and response.api == "openai"
                and response.media_type.startswith("text/event-stream")
                and ctx.body.get("n") in (None, 1)):
            response.stream = _Rescue(self, ctx, response.target).relay(response.stream)
        return response


def targets_of(node: Node) -> tuple[TargetNode, ...]:
    """The targets a route's node reaches (route references followed), in order, each
    provider/model once."""
    seen: dict[str, TargetNode] = {}
    for child in walk(node):
        if isinstance(child, TargetNode):
            seen.setdefault(child.label, child)
    return tuple(seen.values())


@dataclass(slots=True)
class _Attempt:
    """One stream of the answer: what it gave the client, and what the gateway added."""

    target: str
    added_tokens: int = 0  # estimated prompt tokens this attempt's request added
    events: int = 0  # content events the client got from it
    usage: dict[str, Any] | None = None  # the last usage it reported


class _Broken(Exception):
    """Raised by the relay when the stream in hand can no longer be used."""

    def __init__(self, error: UpstreamError):
        self.error = error


@dataclass(slots=True)
class _Rescue:
    node: StreamRecoveryNode
    ctx: RequestContext
    target: str
    text: list[str] = field(default_factory=list)  # content the client got
    head: dict[str, Any] = field(default_factory=dict)
    attempts: list[_Attempt] = field(default_factory=list)
    seam: Seam | None = None  # set while a continuation's start is being joined
    restarts: int = 0  # continuations asked for, failed ones included
    tools: bool = False
    finished: bool = False  # a finish_reason went out
    done: bool = False  # [DONE] went out

    async def relay(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        self.attempts.append(_Attempt(self.target))
        current = stream
        while True:
            events = self._events(current)
            try:
                async for raw in events:
                    out = self._first(raw) if len(self.attempts) == 1 else self._continued(raw)
                    if out:
                        yield out
            except _Broken as broken:
                failure = broken.error
            else:
                if len(self.attempts) > 1:
                    yield self._end()
                return
            finally:
                await events.aclose()
            await _close(current)
            current = await self._restart(failure)

    # -- reading -------------------------------------------------------------------------

    async def _events(self, stream: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
        """Whole SSE events (so what the client got ends between events); a failure, a
        stall or an event that is not a chat chunk raises _Broken."""
        framer, stall = SSEFramer(), self.node.policy.stall_timeout
        iterator = stream.__aiter__()
        while True:
            try:
                if stall is None:
                    piece = await iterator.__anext__()
                else:
                    async with asyncio.timeout(stall):
                        piece = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise _Broken(UpstreamError(
                    408, "timeout", f"no data from upstream for {stall:g}s "
                    "(stream_recovery.stall_timeout)", target=self.target,
                    from_upstream=False)) from None
            except UpstreamError as err:
                raise _Broken(err) from None
            for raw in framer.feed(piece):
                yield raw
        rest = framer.rest()
        if rest.strip():
            yield rest

    def _parse(self, raw: bytes) -> dict[str, Any] | None:
        """A chunk's JSON; None for comments and [DONE]. Malformed data, or an error event,
        breaks the stream."""
        event = parse_event(raw)
        if event is None or not event.data or event.data == "[DONE]":
            return None
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise _Broken(self._failure(502, "server", "malformed event from upstream: "
                                        + event.data[:80])) from None
        if not isinstance(payload, dict):
            raise _Broken(self._failure(502, "server", "malformed event from upstream"))
        if "error" in payload and not payload.get("choices"):
            error = payload["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise _Broken(self._failure(502, "server", f"upstream error event: {message}"))
        return payload

    def _failure(self, status: int, error_class: str, message: str) -> UpstreamError:
        return UpstreamError(status, error_class, message, target=self.target,
                             from_upstream=False)

    # -- the first stream: passed on as it is, read on the way ----------------------------

    def _first(self, raw: bytes) -> bytes:
        payload = self._parse(raw)
        if payload is None:
            return raw
        if not self.head:
            self.head = {k: payload[k] for k in _HEAD if payload.get(k) is not None}
        self._note(payload)
        for choice in payload.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict):
                if delta.get("tool_calls") or delta.get("function_call"):
                    self.tools = True
                content = delta.get("content")
                if isinstance(content, str) and content:
                    self.text.append(content)
                    self.attempts[-1].events += 1
            if isinstance(choice, dict) and choice.get("finish_reason") is not None:
                self.finished = True
        return raw

    def _note(self, payload: dict[str, Any]) -> None:
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.attempts[-1].usage = usage

    # -- a continuation: rewritten into the first stream's shape --------------------------

    def _continued(self, raw: bytes) -> bytes:
        payload = self._parse(raw)
        if payload is None:
            if raw.startswith(b"data: [DONE]"):
                return self._end()
            return raw
        self._note(payload)
        choices = payload.get("choices") or []
        if choices and isinstance(choices[0], dict):
            choice = dict(choices[0])
            delta = {k: v for k, v in (choice.get("delta") or {}).items() if k not in _DROPPED}
            piece = delta.pop("content", None)
            text = self.seam.feed(piece) if self.seam and isinstance(piece, str) else ""
            if choice.get("finish_reason") is not None:
                text += self.seam.flush() if self.seam else ""
                self.finished = True
            if delta.get("tool_calls"):
                self.tools = True
            if text:
                delta["content"] = text
                self.text.append(text)
                self.attempts[-1].events += 1
            if not delta and choice.get("finish_reason") is None and not payload.get("usage"):
                return b""  # nothing left for the client in this chunk
            choice["delta"] = delta
            payload["choices"] = [choice] + choices[1:]
        if isinstance(payload.get("usage"), dict):
            payload["usage"] = self._usage(payload["usage"])
        return data_event(orjson.dumps({**payload, **self.head}))

    def _end(self) -> bytes:
        """What ends a rescued answer: text still held back, the comment, [DONE] (once)."""
        if self.done:
            return b""
        self.done = True
        held = self.seam.flush() if self.seam else ""
        out = b""
        if held:
            self.text.append(held)
            out = data_event(orjson.dumps({**self.head, "object": "chat.completion.chunk",
                                           "choices": [{"index": 0, "delta": {"content": held},
                                                        "finish_reason": None}]}))
        return (out + f": x-gateway-stream-recovered attempts={len(self.attempts)}\n\n".encode()
                + DONE)

    def _usage(self, reported: dict[str, Any]) -> dict[str, Any]:
        """The last attempt's usage plus every earlier attempt's (reported, or estimated)."""
        last = self.attempts[-1]
        base_prompt = int(reported.get("prompt_tokens") or 0) - last.added_tokens
        if base_prompt <= 0:  # the upstream counts far fewer tokens than estimated
            base_prompt = math.ceil(len(orjson.dumps(self.ctx.body.get("messages")))
                                    / _CHARS_PER_TOKEN)
        prompt, completion = 0, 0
        for attempt in self.attempts[:-1]:
            if attempt.usage is not None:
                prompt += int(attempt.usage.get("prompt_tokens") or 0)
                completion += int(attempt.usage.get("completion_tokens") or 0)
            else:
                prompt += base_prompt + attempt.added_tokens
                completion += attempt.events
        prompt += int(reported.get("prompt_tokens") or 0)
        completion += int(reported.get("completion_tokens") or 0)
        return {**reported, "prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    # -- restarting ------------------------------------------------------------------------

    async def _restart(self, failure: UpstreamError) -> AsyncIterator[bytes]:
        """A new stream that continues the answer, or the UpstreamError that ends it (the
        server turns it into the SSE error event)."""
        why = self._unrecoverable()
        if why:
            raise _with_note(failure, why)
        tried: list[str] = []
        while self.restarts < self.node.policy.max_restarts:
            self.restarts += 1
            target = self._next_target()
            form = self._form(target)
            try:
                return await self._ask(target, form)
            except UpstreamError as err:
                if _refused(err) and form == "prefill":
                    tried.append(f"{target.label} refused the prefill ({err.status})")
                    try:
                        return await self._ask(target, "prompt")
                    except UpstreamError as again:
                        err = again
                tried.append(f"{target.label}: {err.message}")
                if _refused(err):
                    break
                self.target = target.label
        raise _with_note(failure, "stream recovery failed: " + "; ".join(tried))

    def _unrecoverable(self) -> str | None:
        if self.tools:
            return "a tool call cannot be continued"
        if self.finished:
            return "the answer had already finished"
        if self.restarts >= self.node.policy.max_restarts:
            return f"no restart left (stream_recovery.max_restarts: {self.node.policy.max_restarts})"
        return None

    def _next_target(self) -> TargetNode:
        """The target after the one that broke (config order, wrapping around), skipping those
        that cannot answer now; the broken one itself when nothing else can."""
        targets = self.node.targets
        at = next((i for i, t in enumerate(targets) if t.label == self.target), -1)
        order = targets[at + 1:] + targets[:at + 1]
        now = time.monotonic()
        return next((t for t in order if t.available(now)), order[0])

    def _form(self, target: TargetNode) -> str:
        wanted = self.node.policy.continue_with
        if wanted != "auto":
            return wanted
        provider = target.provider
        accepts = getattr(provider, "accepts_prefill", None)  # a plugin's provider may lack it
        return "prefill" if accepts is not None and accepts(provider.spec.type) else "prompt"

    async def _ask(self, target: TargetNode, form: str) -> AsyncIterator[bytes]:
        sent = "".join(self.text)
        body, added = continuation_body(self.ctx.body, sent, form,
                                        sum(a.events for a in self.attempts))
        saved, self.ctx.body = self.ctx.body, body
        try:
            response = await target.handle(self.ctx)
        finally:
            self.ctx.body = saved
        if response.stream is None or not response.media_type.startswith("text/event-stream"):
            await _close(response.stream)
            raise UpstreamError(502, "server", f"{target.label} did not answer with a stream",
                                target=target.label, from_upstream=False)
        self.target = target.label
        self.attempts.append(_Attempt(target.label, added))
        self.ctx.stream_recoveries = len(self.attempts) - 1
        self.seam = Seam(sent, join_words=form == "prompt")
        return response.stream


def continuation_body(body: dict[str, Any], sent: str, form: str,
                      events: int) -> tuple[dict[str, Any], int]:
    """The request that asks for the rest of an answer of which ``sent`` reached the client
    (in ``events`` content events), and an estimate of the prompt tokens it adds."""
    out = dict(body)
    for limit in ("max_tokens", "max_completion_tokens"):
        value = out.get(limit)
        if isinstance(value, int) and not isinstance(value, bool):
            out[limit] = max(1, value - events)
    if not sent:
        return out, 0
    messages = list(body.get("messages") or ())
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "assistant" and isinstance(
            last.get("content"), str):  # the client's own prefill: the answer extends it
        messages[-1] = {**last, "content": last["content"] + sent}
    else:
        messages.append({"role": "assistant", "content": sent})
    added = events
    if form == "prompt":
        messages.append({"role": "user", "content": CONTINUE_PROMPT})
        added += math.ceil(len(CONTINUE_PROMPT) / _CHARS_PER_TOKEN)
    out["messages"] = messages
    return out, added


def _refused(err: UpstreamError) -> bool:
    """The continuation itself was refused (a 4xx other than 408 and 429), as opposed to the
    target failing: asking elsewhere would be refused the same way."""
    return err.from_upstream and 400 <= err.status < 500 and err.status not in (408, 429)


def _with_note(failure: UpstreamError, note: str) -> UpstreamError:
    failure.message = f"{failure.message}; {note}"
    failure.args = (failure.message,)
    return failure


async def _close(stream: AsyncIterator[bytes] | None) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()
