"""What every front door that translates a chat stream does the same way: read the
chat.completion.chunk events as they come, and hand the first choice's text and tool call
deltas, the finish reason and the usage to the door's own translator."""

from __future__ import annotations

from typing import Any

from ..providers.sse import SSEFramer, json_objects


class ChatStreamTranslator:
    """Chat chunk bytes in (``feed``, as they come), the door's event bytes out. A subclass
    writes its events in ``_start`` (once, before anything else), ``_text`` and
    ``_tool_delta``, and keeps ``_usage`` and ``_finish`` with ``_usage_of`` and
    ``_finish_of``."""

    def __init__(self) -> None:
        self._framer = SSEFramer()
        self._started = False
        self._open: str | None = None  # the open item: "text" or "tool:<chat tool call index>"

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(event for payload in json_objects(self._framer, chunk)
                        for event in self._chunk(payload))

    def _chunk(self, payload: dict[str, Any]) -> list[bytes]:
        out = self._start()
        if isinstance(payload.get("usage"), dict):
            self._usage_of(payload["usage"])
        for choice in payload.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out.extend(self._text(delta["content"]))
            for call in delta.get("tool_calls") or ():
                out.extend(self._tool_delta(call))
            if choice.get("finish_reason"):
                self._finish_of(choice["finish_reason"])
        return out

    def _start(self) -> list[bytes]:
        raise NotImplementedError

    def _text(self, text: str) -> list[bytes]:
        raise NotImplementedError

    def _tool_delta(self, call: dict[str, Any]) -> list[bytes]:
        raise NotImplementedError

    def _usage_of(self, usage: dict[str, Any]) -> None:
        raise NotImplementedError

    def _finish_of(self, reason: str) -> None:
        raise NotImplementedError
