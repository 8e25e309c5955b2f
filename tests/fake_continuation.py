"""A fake OpenAI-compatible upstream that writes one known answer and can continue it.

Its answer is always ``ANSWER`` (``WORDS`` words, w1 … w60), streamed one word per chunk in
OpenAI's wire format (with a usage chunk when include_usage is asked: prompt tokens are the
words of every message, completion tokens the words it streamed). Asked to continue — a final
assistant message holding the first k words (a prefill), or that message followed by a user
message (the prompt form) — it writes words k+1 … 60: after a prefill with the leading space a
token continuation has, in the prompt form as a new message starts, without it.

What each request gets is scripted per model (``script``): cut the connection or stall after
some words, refuse a prefill or any continuation with 400, repeat words already sent or start
over, or stream a tool call.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .background_app import BackgroundApp

WORDS = 60
ANSWER = " ".join(f"w{i}" for i in range(1, WORDS + 1))
STALL_LIMIT = 10.0  # seconds a stall lasts at most, should the gateway never give up on it


@dataclass
class Turn:
    """What one request gets. Defaults: the (rest of the) answer, whole."""

    cut_after: int | None = None  # words of this answer streamed before the connection is cut
    stall_after: int | None = None  # words streamed before it stops sending, connection open
    refuse_prefill: bool = False  # 400 to a request ending with an assistant message
    refuse: bool = False  # 400 to any request
    repeat: int = 0  # a continuation first repeats this many words already sent
    start_over: bool = False  # a continuation writes the whole answer again
    tool_call: bool = False  # streams a tool call (arguments cut by cut_after) instead of text
    error_event_after: int | None = None  # words streamed before a `data: {"error": ...}` event


class FakeContinuation(BackgroundApp):
    def __init__(self) -> None:
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.requests: list[dict[str, Any]] = []
        self._scripts: dict[str, deque[Turn]] = defaultdict(deque)

    def script(self, model: str, *turns: Turn) -> None:
        self._scripts[model].extend(turns)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        script = self._scripts.get(body["model"])
        turn = script.popleft() if script else Turn()
        messages = body["messages"]
        ends_with_prefill = messages[-1]["role"] == "assistant"
        if turn.refuse or (turn.refuse_prefill and ends_with_prefill):
            return web.json_response({"error": {
                "message": "this model does not support assistant message prefill",
                "type": "invalid_request_error", "code": None, "param": None}}, status=400)
        words, first = self._words(messages, turn)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        head = {"id": f"chatcmpl-{body['model']}-{len(self.requests)}",
                "object": "chat.completion.chunk", "created": len(self.requests),
                "model": body["model"]}

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            payload = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if include_usage:
                payload["usage"] = None
            await resp.write(b"data: " + json.dumps(payload).encode() + b"\n\n")

        await send({"role": "assistant", "content": ""})
        if turn.tool_call:
            await send({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                        "function": {"name": "lookup", "arguments": '{"q": '}}]})
            # Give the gateway time to read the half tool call: bytes still unread when the
            # connection is reset are lost, and the stream would look like text cut early.
            await asyncio.sleep(0.2)
            request.transport.close()
            return resp
        for i, word in enumerate(words):
            if turn.cut_after is not None and i >= turn.cut_after:
                await asyncio.sleep(0.2)  # what was sent is read (see the tool call above)
                request.transport.close()  # a connection reset in the middle of the stream
                return resp
            if turn.stall_after is not None and i >= turn.stall_after:
                await _stall(request)
                return resp
            if turn.error_event_after is not None and i >= turn.error_event_after:
                await resp.write(b'data: {"error": {"message": "model overloaded"}}\n\n')
                await resp.write_eof()
                return resp
            await send({"content": word if i == 0 and not first else " " + word})
        await send({}, "stop")
        if include_usage:
            prompt = sum(len(str(m.get("content") or "").split()) for m in messages)
            usage = {"prompt_tokens": prompt, "completion_tokens": len(words),
                     "total_tokens": prompt + len(words)}
            await resp.write(b"data: " + json.dumps({**head, "choices": [], "usage": usage})
                             .encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    @staticmethod
    def _words(messages: list[dict[str, Any]], turn: Turn) -> tuple[list[str], bool]:
        """The words to stream, and whether the first needs a leading space (it continues a
        prefill)."""
        answer = ANSWER.split()
        if messages[-1]["role"] == "assistant":
            sent, prefill = messages[-1]["content"].split(), True
        elif len(messages) > 1 and messages[-2]["role"] == "assistant":
            sent, prefill = messages[-2]["content"].split(), False
        else:
            return answer, False
        if turn.start_over:
            return answer, False
        start = max(0, len(sent) - turn.repeat)
        return answer[start:], prefill


async def _stall(request: web.Request) -> None:
    """Send nothing more, connection open, until the gateway hangs up (or STALL_LIMIT)."""
    ends = time.monotonic() + STALL_LIMIT
    while time.monotonic() < ends:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.02)
