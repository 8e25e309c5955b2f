"""An OpenAI-compatible upstream whose answer text is set per model (``answers``); whole
answers, or streamed ``piece`` characters per SSE event."""

from __future__ import annotations

import json

from aiohttp import web

from tests.fake_upstream import FakeOpenAI


class ScriptedUpstream(FakeOpenAI):
    piece = 4

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, str] = {}

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, b = await self._record(request)
        if b.status != 200:
            return web.json_response({"error": {"message": "scripted failure", "type": "x",
                                                "code": None, "param": None}}, status=b.status)
        model = body["model"]
        text = self.answers.get(model, f"fake answer from {model}")
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for i in range(0, len(text), self.piece):
                await resp.write(_event(model, {"content": text[i:i + self.piece]}, None))
            await resp.write(_event(model, {}, "stop") + b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        return web.json_response({
            "id": "scripted", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })


def _event(model: str, delta: dict, finish: str | None) -> bytes:
    payload = {"id": "scripted", "object": "chat.completion.chunk", "created": 1, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"
