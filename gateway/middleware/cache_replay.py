"""Cached answers and streams: one stored form (the whole answer's JSON, as a non-streamed
request gets it), turned into SSE chunks for a ``stream: true`` request, and assembled from a
live stream's chunks so that it can be stored once the stream is complete.

The chunks have the shape of a live OpenAI stream: for chat, a role chunk, the content, the
tool calls, a chunk with the finish reason per choice, then (when the request asks for it with
``stream_options.include_usage``) a usage chunk with empty ``choices``, then ``[DONE]``.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import orjson

from ..providers.sse import DONE, SSEFramer, parse_event
from ..providers.sse import chunk as _event


def replay_chunks(endpoint: str, answer: dict[str, Any], include_usage: bool) -> list[bytes]:
    """The SSE events of a streamed answer equal to ``answer`` (a chat or completions body)."""
    chat = endpoint == "chat"
    head = {"id": answer.get("id", ""), "object": "chat.completion.chunk" if chat else
            "text_completion", "created": answer.get("created", 0), "model": answer.get("model", "")}
    if answer.get("system_fingerprint") is not None:
        head["system_fingerprint"] = answer["system_fingerprint"]
    out = []
    for choice in answer.get("choices") or ():
        index = choice.get("index", 0)
        if chat:
            message = choice.get("message") or {}
            out.append(_event({**head, "choices": [{"index": index, "delta": {
                "role": message.get("role", "assistant"), "content": ""}, "finish_reason": None}]}))
            if message.get("content"):
                out.append(_event({**head, "choices": [{"index": index, "delta": {
                    "content": message["content"]}, "finish_reason": None}]}))
            if message.get("refusal"):
                out.append(_event({**head, "choices": [{"index": index, "delta": {
                    "refusal": message["refusal"]}, "finish_reason": None}]}))
            if message.get("tool_calls"):
                calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
                out.append(_event({**head, "choices": [{"index": index, "delta": {
                    "tool_calls": calls}, "finish_reason": None}]}))
            out.append(_event({**head, "choices": [{"index": index, "delta": {},
                                                    "finish_reason": choice.get("finish_reason")}]}))
        else:
            if choice.get("text"):
                out.append(_event({**head, "choices": [{"index": index, "text": choice["text"],
                                                        "finish_reason": None}]}))
            out.append(_event({**head, "choices": [{"index": index, "text": "",
                                                    "finish_reason": choice.get("finish_reason")}]}))
    if include_usage and isinstance(answer.get("usage"), dict):
        out.append(_event({**head, "choices": [], "usage": answer["usage"]}))
    out.append(DONE)
    return out


async def stream_of(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class StreamRecorder:
    """Fed a live stream's bytes; ``answer()`` is the whole answer once the stream ended with
    ``[DONE]`` and every choice had a finish reason, else None (never store half an answer)."""

    __slots__ = ("endpoint", "_framer", "_head", "_choices", "_usage", "_done", "_broken")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._framer = SSEFramer()
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, Any] | None = None
        self._done = False
        self._broken = False

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        for event in self._framer.feed(chunk):
            self._event(event)

    def _event(self, event: bytes) -> None:
        parsed = parse_event(event)
        data = parsed.data if parsed is not None else ""
        if not data:
            return
        if data == "[DONE]":
            self._done = True
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._broken = True
            return
        if not isinstance(payload, dict) or "error" in payload:
            self._broken = True  # an error event: the answer is not complete
            return
        if not self._head:
            self._head = {k: payload[k] for k in ("id", "created", "model", "system_fingerprint")
                          if payload.get(k) is not None}
        if isinstance(payload.get("usage"), dict):
            self._usage = payload["usage"]
        for delta in payload.get("choices") or ():
            self._choice(delta)

    def _choice(self, delta: dict[str, Any]) -> None:
        choice = self._choices.setdefault(delta.get("index", 0), {"finish_reason": None,
                                                                  "content": [], "calls": {}})
        if delta.get("finish_reason") is not None:
            choice["finish_reason"] = delta["finish_reason"]
        if self.endpoint != "chat":
            choice["content"].append(delta.get("text") or "")
            return
        part = delta.get("delta") or {}
        if part.get("role"):
            choice["role"] = part["role"]
        if part.get("content"):
            choice["content"].append(part["content"])
        if part.get("refusal"):
            choice["refusal"] = choice.get("refusal", "") + part["refusal"]
        for call in part.get("tool_calls") or ():
            mine = choice["calls"].setdefault(call.get("index", 0), {"function": {
                "name": "", "arguments": ""}})
            for field in ("id", "type"):
                if call.get(field):
                    mine[field] = call[field]
            function = call.get("function") or {}
            mine["function"]["name"] += function.get("name") or ""
            mine["function"]["arguments"] += function.get("arguments") or ""

    def answer(self) -> dict[str, Any] | None:
        if self._broken or not self._done or not self._choices or any(
                c["finish_reason"] is None for c in self._choices.values()):
            return None
        chat = self.endpoint == "chat"
        choices = []
        for index in sorted(self._choices):
            c = self._choices[index]
            text = "".join(c["content"])
            if chat:
                message: dict[str, Any] = {"role": c.get("role", "assistant"),
                                           "content": text or None}
                if c.get("refusal"):
                    message["refusal"] = c["refusal"]
                if c["calls"]:
                    message["tool_calls"] = [{"type": "function", **c["calls"][i]}
                                             for i in sorted(c["calls"])]
                choices.append({"index": index, "message": message,
                                "finish_reason": c["finish_reason"], "logprobs": None})
            else:
                choices.append({"index": index, "text": text, "finish_reason": c["finish_reason"],
                                "logprobs": None})
        answer = {**self._head, "object": "chat.completion" if chat else "text_completion",
                  "choices": choices}
        if self._usage is not None:
            answer["usage"] = self._usage
        return answer
