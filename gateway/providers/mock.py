"""The built-in offline provider: deterministic answers, correct usage, SSE streaming,
deterministic embeddings, a latency knob and failure injection for demos and tests.

A token here is a whitespace-separated word, so usage numbers are easy to check by hand.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import random
import re
import struct
import time
from typing import Any, AsyncIterator

import orjson

from ..errors import UpstreamError
from ..units import duration_text
from .base import ClientPool, Provider, ProviderSpec, UpstreamRequest, UpstreamResponse
from .native import bad_request
from .sse import DONE, chunk


class MockProvider(Provider):
    capabilities = frozenset({"chat", "completions", "embeddings", "stream", "images", "audio"})
    base_url = "mock://"

    def passthrough_headers(self) -> dict[str, str] | None:
        return None  # answered in process: there is no HTTP API to pass through to

    async def check_health(self, timeout: float) -> str | None:
        """Unhealthy when it is set to fail every request (error_rate: 1)."""
        return "mock: error_rate is 1" if self.error_rate >= 1 else None

    def __init__(self, spec: ProviderSpec, clients: ClientPool) -> None:
        super().__init__(spec, clients)
        opts = spec.options
        self.latency: float = opts.get("latency", 0.0)
        self.chunk_delay: float = opts.get("chunk_delay", 0.0)
        self.error_rate: float = opts.get("error_rate", 0.0)
        self.error_status: int = opts.get("error_status", 503)
        self._rng = random.Random(opts.get("seed"))

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        if self.latency:
            if self.latency >= request.timeouts.first_byte:
                await asyncio.sleep(request.timeouts.first_byte)
                raise UpstreamError(
                    408, "timeout",
                    f"mock: no answer within {duration_text(request.timeouts.first_byte)}",
                    from_upstream=False,
                )
            await asyncio.sleep(self.latency)
        if self.error_rate and self._rng.random() < self.error_rate:
            raise _injected_error(self.error_status)
        body = request.body
        model = str(body.get("model", "mock"))
        if request.endpoint == "embeddings":
            return _json(embeddings(body, model))
        if request.endpoint == "images":
            return _json(images(body))
        if request.endpoint == "speech":
            return UpstreamResponse(200, stream=_chunks(speech(body)), media_type="audio/wav")
        if request.endpoint == "transcriptions":
            return _json(transcription(request))
        prompt = _prompt_text(body, request.endpoint)
        words = reply_for(model, prompt).split()
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        finish = "stop"
        if isinstance(limit, int) and 0 < limit < len(words):
            words, finish = words[:limit], "length"
        usage = _usage(len(prompt.split()), len(words))
        if request.stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = _stream(request.endpoint, model, words, finish, usage if include_usage else None,
                             self.chunk_delay)
            return UpstreamResponse(200, stream=chunks, media_type="text/event-stream")
        return _json(_completion(request.endpoint, model, " ".join(words), finish, usage))


def reply_for(model: str, prompt: str) -> str:
    """The mock's answer: names the model (so routing is visible) and echoes the prompt."""
    echo = " ".join(prompt.split()[-12:]) or "(empty prompt)"
    return f"Mock reply from {model}: {echo}"


def _prompt_text(body: dict[str, Any], endpoint: str) -> str:
    if endpoint == "completions":
        prompt = body.get("prompt", "")
        if not isinstance(prompt, list):
            return str(prompt)
        return " ".join(_words(p) for p in prompt)  # strings, token ids or arrays of them
    texts = []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p["text"] for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return " ".join(texts)


def _words(item: Any) -> str:
    return " ".join(map(str, item)) if isinstance(item, list) else str(item)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _ident(prefix: str) -> str:
    return f"{prefix}-mock{time.monotonic_ns():x}"


def _completion(endpoint: str, model: str, text: str, finish: str,
                usage: dict[str, Any]) -> dict[str, Any]:
    if endpoint == "completions":
        return {
            "id": _ident("cmpl"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
            "usage": usage,
        }
    return {
        "id": _ident("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": usage,
    }


async def _stream(
    endpoint: str, model: str, words: list[str], finish: str, usage: dict[str, Any] | None,
    delay: float,
) -> AsyncIterator[bytes]:
    ident, created = _ident("chatcmpl"), int(time.time())
    chat = endpoint == "chat"

    def event(choice: dict[str, Any] | None, extra: dict[str, Any] | None = None) -> bytes:
        return chunk({
            "id": ident,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": model,
            "choices": [choice] if choice else [],
            **(extra or {}),
        })

    if chat:
        yield event({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
    for i, word in enumerate(words):
        if delay:
            await asyncio.sleep(delay)
        piece = word if i == 0 else " " + word
        if chat:
            yield event({"index": 0, "delta": {"content": piece}, "finish_reason": None})
        else:
            yield event({"index": 0, "text": piece, "finish_reason": None})
    if chat:
        yield event({"index": 0, "delta": {}, "finish_reason": finish})
    else:
        yield event({"index": 0, "text": "", "finish_reason": finish})
    if usage is not None:
        yield event(None, {"usage": usage})
    yield DONE


MAX_DIMENSIONS = 4096  # real embedding models go up to 3072


def embeddings(body: dict[str, Any], model: str) -> dict[str, Any]:
    inputs = body.get("input", "")
    if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    dims = body.get("dimensions") or 64
    if not isinstance(dims, int) or not 0 < dims <= MAX_DIMENSIONS:
        raise bad_request(f"mock: dimensions must be an integer from 1 to {MAX_DIMENSIONS}",
                          "dimensions")
    data, tokens = [], 0
    for i, item in enumerate(inputs):
        text = _words(item)
        tokens += len(text.split())
        data.append({"object": "embedding", "index": i, "embedding": embed(text, dims)})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def embed(text: str, dims: int) -> list[float]:
    """A unit vector, the same for the same text, and close for similar texts: the sum of one
    pseudo-random unit vector per word (lowercased, punctuation dropped), normalised. Two
    sentences sharing most of their words have a high cosine similarity; unrelated ones a low
    one (about 0 ± 1/sqrt(dims)). Text without words gets its own hash's vector."""
    words = _WORD.findall(text.lower()) or [text]
    total = [0.0] * dims
    for word in words:
        for i, value in enumerate(_word_vector(word, dims)):
            total[i] += value
    norm = math.sqrt(sum(v * v for v in total)) or 1.0
    return [round(v / norm, 6) for v in total]


_WORD = re.compile(r"\w+")


def _word_vector(word: str, dims: int) -> list[float]:
    raw = b""
    counter = 0
    while len(raw) < dims * 4:
        raw += hashlib.sha256(f"{counter}:{word}".encode()).digest()
        counter += 1
    values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dims}I", raw[: dims * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


# The smallest valid PNG: one transparent pixel.
PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def images(body: dict[str, Any]) -> dict[str, Any]:
    count = body.get("n") or 1
    prompt = str(body.get("prompt", ""))
    if body.get("response_format") == "url":
        item = {"url": "data:image/png;base64," + base64.b64encode(PIXEL_PNG).decode()}
    else:
        item = {"b64_json": base64.b64encode(PIXEL_PNG).decode()}
    return {"created": int(time.time()),
            "data": [{**item, "revised_prompt": f"mock image of: {prompt}"} for _ in range(count)]}


def speech(body: dict[str, Any]) -> bytes:
    """A WAV of silence, 20 ms per word of the input (8 kHz, 8-bit mono)."""
    words = len(str(body.get("input", "")).split()) or 1
    frames = b"\x80" * (160 * words)
    header = (b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 8000, 1, 8)
              + b"data" + struct.pack("<I", len(frames)))
    return header + frames


async def _chunks(data: bytes, size: int = 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def transcription(request: UpstreamRequest) -> dict[str, Any]:
    sizes = []
    for upload in request.files:
        sizes.append(f"{len(upload.rewind().read())} bytes of {upload.filename}")
    return {"text": f"Mock transcription of {', '.join(sizes) or 'nothing'}"}


def _json(data: Any) -> UpstreamResponse:
    return UpstreamResponse(200, body=orjson.dumps(data))


def _injected_error(status: int) -> UpstreamError:
    kind = "rate_limit" if status == 429 else ("server" if status >= 500 else "client")
    body = orjson.dumps(
        {"error": {"message": f"mock: injected failure {status}", "type": "mock_error",
                   "code": None, "param": None}}
    )
    return UpstreamError(status, kind, f"mock: injected failure {status}", body=body)
