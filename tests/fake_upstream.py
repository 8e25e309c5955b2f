"""A fake OpenAI-compatible upstream on a loopback port, for tests of the real server.

It runs an aiohttp app in a background thread with its own event loop, speaks the OpenAI wire
format (JSON and SSE streaming), records every request, and can be told per model what to do
next: answer a status, hang, stream slowly, or reset the connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import fake_openai_responses
from .background_app import BackgroundApp


@dataclass
class Behaviour:
    """What the upstream does for one request. Defaults: answer 200 at once."""

    status: int = 200
    delay: float = 0.0  # before the response headers
    chunk_delay: float = 0.0  # between stream chunks
    fail_after_chunks: int | None = None  # reset the connection mid-stream
    headers: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None
    body: str | None = None  # answer exactly this (with ``status``), not the usual answer
    content_type: str = "application/json"  # of ``body``


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class FakeOpenAI(BackgroundApp):
    def __init__(self) -> None:
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.requests: list[Recorded] = []
        self.models_status = 200  # what GET /v1/models (health checks) answers
        self.usage: dict | None = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        # Whether streams honour stream_options.include_usage (older servers ignore it).
        self.stream_usage = True
        self.model_checks = 0
        # Embeddings: a vector of each input's own (its length, its first and last character
        # codes, or its token ids) and usage counting its words, instead of fixed ones.
        self.vectors_of_input = False
        self._scripts: dict[str, deque[Behaviour]] = defaultdict(deque)

    # -- control ---------------------------------------------------------------------------

    def script(self, model: str, *behaviours: Behaviour | int) -> None:
        """Queue what the next requests for ``model`` get (ints are statuses)."""
        for b in behaviours:
            self._scripts[model].append(Behaviour(status=b) if isinstance(b, int) else b)

    def models_seen(self) -> list[str]:
        return [r.body.get("model") for r in self.requests]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/moderations", self._moderations)
        app.router.add_post("/v1/rerank", self._rerank)
        app.router.add_post("/v1/responses", self._responses)

    # -- handlers --------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> tuple[dict, Behaviour]:
        body = await request.json()
        self.requests.append(Recorded(request.path, dict(request.headers), body, time.monotonic()))
        script = self._scripts.get(body.get("model"))
        behaviour = script.popleft() if script else Behaviour()
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        return body, behaviour

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, b = await self._record(request)
        if b.body is not None:
            return web.Response(text=b.body, status=b.status, content_type=b.content_type,
                                headers=b.headers)
        if b.status != 200:
            return _error(b)
        model = body["model"]
        text = f"fake answer from {model}"
        if body.get("stream"):
            with_usage = self.stream_usage and bool(
                (body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, model, text, b, with_usage)
        answer = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
        }
        if self.usage is not None:  # None: a server that reports no usage
            answer["usage"] = dict(self.usage)
        return web.json_response(answer, headers=b.headers)

    async def _stream(self, request, model: str, text: str, b: Behaviour,
                      with_usage: bool = False) -> web.StreamResponse:
        """OpenAI's stream; with include_usage, every chunk has `"usage": null` and a last
        chunk with empty choices carries the usage, as OpenAI does."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **b.headers})
        await resp.prepare(request)
        words = text.split()
        for i, word in enumerate(words):
            if b.fail_after_chunks is not None and i >= b.fail_after_chunks:
                request.transport.close()  # a connection reset in the middle of the stream
                return resp
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                     "model": model,
                     "choices": [{"index": 0, "delta": {"content": (" " if i else "") + word},
                                  "finish_reason": None}]}
            if with_usage:
                chunk["usage"] = None
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if b.chunk_delay:
                await asyncio.sleep(b.chunk_delay)
        done = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await resp.write(b"data: " + json.dumps(done).encode() + b"\n\n")
        if with_usage:
            usage = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                     "model": model, "choices": [], "usage": dict(self.usage)}
            await resp.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _embeddings(self, request: web.Request) -> web.Response:
        body, b = await self._record(request)
        if b.status != 200:
            return _error(b)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if not self.vectors_of_input:
            data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                    for i, _ in enumerate(inputs)]
            return web.json_response({"object": "list", "data": data, "model": body["model"],
                                      "usage": {"prompt_tokens": 2, "total_tokens": 2}})
        if inputs and isinstance(inputs[0], int):
            inputs = [inputs]
        data = [{"object": "embedding", "index": i, "embedding": input_vector(item)}
                for i, item in enumerate(inputs)]
        data.reverse()  # the index, not the position, says which input a vector is for
        tokens = sum(len(item) if isinstance(item, list) else len(item.split()) for item in inputs)
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def _images(self, request: web.Request) -> web.Response:
        body, b = await self._record(request)
        if b.status != 200:
            return _error(b)
        return web.json_response({"created": 1, "data": [
            {"url": f"https://images.invalid/{body['model']}.png", "revised_prompt": body["prompt"]}]})

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body, b = await self._record(request)
        if b.status != 200:
            return _error(b)
        resp = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        await resp.prepare(request)
        for i in range(4):  # binary audio, sent in pieces
            await resp.write(bytes([i]) * 1000)
            if b.chunk_delay:
                await asyncio.sleep(b.chunk_delay)
        await resp.write_eof()
        return resp

    async def _transcriptions(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        data = upload.file.read()
        fields = {k: v for k, v in form.items() if k != "file"}
        self.requests.append(Recorded(request.path, dict(request.headers),
                                      {**fields, "file": {"name": upload.filename, "size": len(data)}},
                                      time.monotonic()))
        script = self._scripts.get(fields.get("model"))
        b = script.popleft() if script else Behaviour()
        if b.status != 200:
            return _error(b)
        return web.json_response({"text": f"heard {len(data)} bytes from {upload.filename}"})

    async def _moderations(self, request: web.Request) -> web.Response:
        body, b = await self._record(request)
        if b.status != 200:
            return _error(b)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        results = [{"flagged": "kill" in str(text), "categories": {"violence": "kill" in str(text)},
                    "category_scores": {"violence": 0.9 if "kill" in str(text) else 0.01}}
                   for text in inputs]
        return web.json_response({"id": "modr-fake", "model": body["model"], "results": results})

    async def _rerank(self, request: web.Request) -> web.Response:
        """vLLM's Cohere-shaped rerank: documents scored by the words they share with the query."""
        body, b = await self._record(request)
        if b.status != 200:
            return _error(b)
        words = set(body["query"].lower().split())
        scored = [{"index": i, "relevance_score": len(words & set(str(d).lower().split())) / 10}
                  for i, d in enumerate(body["documents"])]
        scored.sort(key=lambda r: -r["relevance_score"])
        return web.json_response({"id": "rerank-fake", "model": body["model"],
                                  "usage": {"total_tokens": 9},
                                  "results": scored[: body.get("top_n") or len(scored)]})

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body, b = await self._record(request)
        if b.status != 200:
            return _error(b)
        return await fake_openai_responses.answer(request, body, b.fail_after_chunks)

    async def _models(self, request: web.Request) -> web.Response:
        self.model_checks += 1
        return web.json_response({"object": "list", "data": []}, status=self.models_status)


def input_vector(item: str | list[int]) -> list[float]:
    """What FakeOpenAI (vectors_of_input) embeds an input as."""
    if isinstance(item, list):
        return [float(t) for t in item]
    return [float(len(item)), float(ord(item[0]) if item else 0), float(ord(item[-1]) if item else 0)]


def _error(b: Behaviour) -> web.Response:
    message = f"fake upstream error {b.status}"
    return web.json_response(
        {"error": {"message": message, "type": "fake_error", "code": b.error_code, "param": None}},
        status=b.status,
        headers=b.headers,
    )
