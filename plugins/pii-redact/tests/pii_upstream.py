"""An OpenAI-compatible upstream that answers with the prompt it received.

Whole answers echo the prompt text; streamed answers send it ``piece`` characters per SSE
event and write every event in two halves, so that placeholders such as ``[EMAIL_1]`` are cut
across events and events are cut across network writes.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from tests.fake_upstream import FakeOpenAI


def prompt_of(body: dict) -> str:
    if "messages" in body:
        texts = []
        for m in body["messages"]:
            content = m.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(p["text"] for p in content if p.get("type") == "text")
        return "\n".join(texts)
    prompt = body.get("prompt", "")
    return "\n".join(prompt) if isinstance(prompt, list) else prompt


class EchoUpstream(FakeOpenAI):
    piece = 3

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, _ = await self._record(request)
        chat = request.path.endswith("/chat/completions")
        text = prompt_of(body)
        if body.get("stream"):
            return await self._echo_stream(request, body["model"], text, chat)
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
        return web.json_response({
            "id": "echo", "object": "chat.completion" if chat else "text_completion",
            "created": 1, "model": body["model"], "choices": [choice],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    async def _echo_stream(self, request, model: str, text: str, chat: bool):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        def event(choice: dict) -> bytes:
            kind = "chat.completion.chunk" if chat else "text_completion"
            payload = {"id": "echo", "object": kind, "created": 1, "model": model,
                       "choices": [choice]}
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        for i in range(0, len(text), self.piece):
            part = text[i:i + self.piece]
            choice = ({"index": 0, "delta": {"content": part}, "finish_reason": None} if chat
                      else {"index": 0, "text": part, "finish_reason": None})
            raw = event(choice)
            half = len(raw) // 2
            await resp.write(raw[:half])
            await asyncio.sleep(0.001)
            await resp.write(raw[half:])
        end = ({"index": 0, "delta": {}, "finish_reason": "stop"} if chat
               else {"index": 0, "text": "", "finish_reason": "stop"})
        await resp.write(event(end) + b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
