"""Checking a streamed answer as it passes.

The bytes are re-framed into whole SSE events, so that the guard only ever sends whole events
and can stop between two of them. Per choice it keeps the text so far: deny patterns and
max_length are checked after every event (deny near the new text, then once over the whole
text when the choice finishes), json_schema when the choice finishes (or at ``[DONE]``, or at
the end of the stream). An event that breaks a rule is held back; what happens then is the
caller's ``on_fail``: return bytes to send first (flag), or raise to end the stream (fallback).

A raise is delivered after the whole events that came before the broken one: when they arrived
in the same network chunk, they are sent now and the error is raised on the next call (the
next chunk, or the end of the stream), so what the client receives does not depend on how the
network cut the stream.
"""

from __future__ import annotations

from typing import Callable

import orjson

from .rules import Rules
from gateway.providers.sse import SSEFramer

# An SSE event ends with an empty line; a line ends with CRLF, LF or CR.
# Deny patterns are searched in the new text plus this much of the text before it, so a match
# split across events is found at once; a final search over the whole text finds longer ones.
WINDOW = 4096
# Native streams behind the front doors (sent as the provider wrote them): the events that
# carry the answer's text, and those that end it. Anthropic's /v1/messages, OpenAI's Responses.
TEXT_EVENTS = frozenset({"content_block_delta", "response.output_text.delta"})
END_EVENTS = frozenset({"message_stop", "response.completed"})
NATIVE_EVENTS = TEXT_EVENTS | END_EVENTS


def event_data(raw: bytes) -> str | None:
    data = []
    for line in raw.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(data).decode("utf-8", "replace") if data else None


class ChoiceText:
    __slots__ = ("pieces", "length", "tail", "finished")

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.length = 0
        self.tail = ""  # the last WINDOW characters
        self.finished = False

    def text(self) -> str:
        return "".join(self.pieces)


class StreamGuard:
    """``on_fail(reason)`` is called once, with the first broken rule, before the event that
    broke it is sent: it may raise (to end the stream) or return bytes to send first (a flag)."""

    __slots__ = ("rules", "on_fail", "framer", "choices", "failed", "pending")

    def __init__(self, rules: Rules, on_fail: Callable[[str], bytes]):
        self.rules = rules
        self.on_fail = on_fail
        self.framer = SSEFramer()
        self.choices: dict[int, ChoiceText] = {}
        self.failed: str | None = None
        self.pending: Exception | None = None  # raised by on_fail, to raise on the next call

    def feed(self, chunk: bytes) -> bytes:
        self._raise_pending()
        return self._run(lambda: self.framer.feed(chunk), None, defer=True)

    def close(self) -> bytes:
        self._raise_pending()
        rest = self.framer.rest()
        # The last call: nothing comes after it to raise a deferred error, so raise at once.
        return self._run(lambda: [rest + b"\n\n"] if rest.strip() else [], self._finish_all,
                         defer=False)

    def _run(self, events, finish, defer: bool) -> bytes:
        out: list[bytes] = []
        try:
            for raw in events():
                out.append(self._event(raw))
            if finish is not None:
                out.append(finish())
        except Exception as exc:
            if not defer or not any(out):
                raise
            self.pending = exc  # send the whole events before the broken one first
        return b"".join(out)

    def _raise_pending(self) -> None:
        if self.pending is not None:
            exc, self.pending = self.pending, None
            raise exc

    def _event(self, raw: bytes) -> bytes:
        if self.failed is not None:
            return raw
        data = event_data(raw)
        if data is None:
            return raw
        if data.strip() == "[DONE]":
            return self._finish_all() + raw
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(payload, dict):
            return raw
        if payload.get("type") in NATIVE_EVENTS:
            return self._native(payload) + raw
        choices = payload.get("choices")
        if not isinstance(choices, list):
            return raw
        for position, choice in enumerate(choices):
            if isinstance(choice, dict):
                reason = self._choice(choice, position)
                if reason:
                    return self._fail(reason, len(self.choices) > 1, choice, position) + raw
        return raw

    def _choice(self, choice: dict, position: int) -> str | None:
        state = self._state(choice.get("index", position))
        delta = choice.get("delta")
        piece = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        reason = self._piece(state, piece)
        if reason is None and choice.get("finish_reason") is not None:
            reason = self._finish(state)
        return reason

    def _native(self, payload: dict) -> bytes:
        """An event of a native stream: the text deltas of every content block (Anthropic) or
        output item (Responses) make one answer; message_stop or response.completed ends it."""
        state = self._state(0)
        if payload["type"] in END_EVENTS:
            reason = self._finish(state)
        else:
            delta = payload.get("delta")  # Anthropic: {"type": "text_delta", "text": ...}
            piece = delta.get("text") if isinstance(delta, dict) else delta
            reason = self._piece(state, piece)
        return self._fail(reason, False, None, 0) if reason else b""

    def _state(self, index: int) -> ChoiceText:
        state = self.choices.get(index)
        if state is None:
            state = self.choices[index] = ChoiceText()
        return state

    def _piece(self, state: ChoiceText, piece: object) -> str | None:
        if not isinstance(piece, str) or not piece:
            return None
        window = state.tail + piece
        state.pieces.append(piece)
        state.length += len(piece)
        state.tail = window[-WINDOW:]
        return self.rules.check_deny(window) or self.rules.check_length_of(state.length)

    def _finish(self, state: ChoiceText) -> str | None:
        if state.finished:
            return None
        state.finished = True
        text = state.text()
        return self.rules.check_deny(text) or self.rules.check_schema(text)

    def _finish_all(self) -> bytes:
        if self.failed is not None:
            return b""
        for index, state in sorted(self.choices.items()):
            reason = self._finish(state)
            if reason:
                return self._fail(reason, len(self.choices) > 1, None, index)
        return b""

    def _fail(self, reason: str, several: bool, choice: dict | None, index: int) -> bytes:
        if several:
            reason = f"choices[{choice.get('index', index) if choice else index}]: {reason}"
        self.failed = reason
        return self.on_fail(reason)
