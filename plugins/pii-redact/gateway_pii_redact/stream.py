"""Restoring placeholders in a streamed answer.

Upstream bytes arrive cut anywhere: an SSE event may span chunks, and a placeholder may span
events ("[EM" in one delta, "AIL_1]" in the next). The restorer re-frames the bytes into whole
events, keeps per choice a trailing piece that may still become a placeholder, sends it on
with the next piece or when the choice finishes, and flushes whatever is left before
``data: [DONE]`` or at the end of the stream.
"""

from __future__ import annotations

from typing import Any

import orjson

from .mask import Vault
from gateway.providers.sse import SSEFramer

# An SSE event ends with an empty line; a line ends with CRLF, LF or CR.
# Fields copied from the last chunk into a chunk the restorer makes itself.
_TEMPLATE = ("id", "object", "created", "model")


def split_event(raw: bytes) -> tuple[list[bytes], str | None]:
    """(the event's other lines, its data) — data lines joined as the SSE spec says."""
    other, data = [], []
    for line in raw.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line:
            other.append(line)
    return other, (b"\n".join(data).decode("utf-8", "replace") if data else None)


def build_event(other: list[bytes], payload: Any) -> bytes:
    head = b"".join(line + b"\n" for line in other)
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


class StreamRestorer:
    """Per-request state of one streamed answer."""

    __slots__ = ("vault", "framer", "held", "template")

    def __init__(self, vault: Vault):
        self.vault = vault
        self.framer = SSEFramer()
        self.held: dict[tuple[int, str], str] = {}  # (choice index, field) -> text held back
        self.template: dict[str, Any] = {}  # id, object, created, model of the last chunk

    def __repr__(self) -> str:
        return f"<pii-redact stream: {len(self.held)} pieces held>"

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._event(raw) for raw in self.framer.feed(chunk))

    def close(self) -> bytes:
        rest = self.framer.rest()
        out = self._event(rest + b"\n\n") if rest.strip() else b""
        return out + self._flush()

    def _event(self, raw: bytes) -> bytes:
        other, data = split_event(raw)
        if data is None:
            return raw
        if data.strip() == "[DONE]":
            return self._flush() + raw
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
            return raw
        self.template = {k: payload[k] for k in _TEMPLATE if k in payload}
        changed = False
        for choice in payload["choices"]:
            if isinstance(choice, dict):
                changed |= self._choice(choice)
        return build_event(other, payload) if changed else raw

    def _choice(self, choice: dict) -> bool:
        index = choice.get("index", 0)
        finished = choice.get("finish_reason") is not None
        delta = choice.get("delta")
        if isinstance(delta, dict):  # chat.completion.chunk
            holder, field = delta, "content"
        elif "text" in choice:  # text_completion
            holder, field = choice, "text"
        else:
            return False
        piece = holder.get(field)
        slot = (index, field)
        if not isinstance(piece, str):
            if finished and slot in self.held:  # the last piece rides on the finishing chunk
                holder[field] = self.vault.restore(self.held.pop(slot))
                return True
            return False
        text = self.held.pop(slot, "") + piece
        if finished:
            out, tail = self.vault.restore(text), ""
        else:
            out, tail = self.vault.restore_prefix(text)
        if tail:
            self.held[slot] = tail
        if out == piece:
            return False
        holder[field] = out
        return True

    def _flush(self) -> bytes:
        """Send what is still held, in one chunk per choice, before the stream ends."""
        out = []
        for (index, field), text in sorted(self.held.items()):
            text = self.vault.restore(text)
            if field == "content":
                choice = {"index": index, "delta": {"content": text}, "finish_reason": None}
                kind = "chat.completion.chunk"
            else:
                choice = {"index": index, "text": text, "finish_reason": None}
                kind = "text_completion"
            out.append(build_event([], {"object": kind, **self.template, "choices": [choice]}))
        self.held.clear()
        return b"".join(out)
