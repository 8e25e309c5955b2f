"""A fast fake OpenAI upstream for benchmarks.

Written on a raw ``asyncio.Protocol`` (uvloop when installed) rather than a web framework so that the
upstream costs as little CPU as possible: on a 2-core machine it shares the cores with wrk and the
system under test, and every microsecond it spends is taken from them.

It parses just enough HTTP/1.1: the request line, the headers it needs, a Content-Length body;
connections are kept alive. Endpoints:

- ``POST /v1/chat/completions``: a fixed ``chat.completion``; with ``"stream": true`` in the body an
  SSE stream (chunked transfer encoding) of ``--chunks`` chunks then ``data: [DONE]``, with
  ``--chunk-delay-ms`` between chunks. The streamed pieces join to the non-streamed content.
  A model whose name contains ``slow-<MS>x<N>`` (``slow-50x10``) streams N chunks MS ms apart
  instead, whatever the options say: the streaming checks use it through every system, since
  each passes the model name on (or maps a route to a target of that name).
- ``GET /v1/models``: one model, ``fake-model``.

Usage: ``python bench/fake_upstream.py --port P [--chunks 5] [--chunk-delay-ms 0]``.
Standalone on purpose (standard library, optional uvloop): it runs as its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re

MODEL = "fake-model"
CREATED = 1_700_000_000
MAX_HEAD = 64 * 1024
SLOW_MODEL = re.compile(r"slow-(\d+)x(\d+)")
MAX_SLOW_CHUNKS = 10_000


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _error(status: str, message: str, type_: str, code: str | None = None) -> bytes:
    body = _json({"error": {"message": message, "type": type_, "code": code, "param": None}})
    return _response(status, body)


def _chunk(data: bytes) -> bytes:
    """One piece of an HTTP/1.1 chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class Replies:
    """Every byte string the server sends, built once at start-up."""

    def __init__(self, chunks: int) -> None:
        pieces = [f"token{i} " for i in range(chunks)]
        completion = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces)},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": 5 + chunks},
        }
        self.completion = _response("200 OK", _json(completion))
        self.models = _response(
            "200 OK",
            _json({"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}]}),
        )
        self.stream_head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        self.stream_events = [_chunk(self._event(i, piece, last=i == chunks - 1)) for i, piece in enumerate(pieces)]
        self.stream_end = _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
        self.stream_all = self.stream_head + b"".join(self.stream_events) + self.stream_end
        self.not_found = _error("404 Not Found", "no such endpoint", "invalid_request_error", "not_found")
        self.bad_request = _error("400 Bad Request", "malformed request", "invalid_request_error")
        self.bad_json = _error("400 Bad Request", "body is not valid JSON", "invalid_request_error")
        self.length_required = _error("411 Length Required", "send a Content-Length body", "invalid_request_error")
        self.head_too_large = _error("431 Request Header Fields Too Large", "headers too large", "invalid_request_error")

    @staticmethod
    def _event(i: int, content: str, last: bool) -> bytes:
        delta = {"role": "assistant", "content": content} if i == 0 else {"content": content}
        chunk = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": "stop" if last else None}],
        }
        return b"data: " + _json(chunk) + b"\n\n"


def _parse_head(head: bytes) -> tuple[bytes, bytes, int, bool, bool]:
    """Method, path, Content-Length, whether to close afterwards, whether the body is chunked."""
    lines = head.split(b"\r\n")
    method, path, version = lines[0].split(b" ")
    length, close, chunked = 0, version == b"HTTP/1.0", False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"transfer-encoding":
            chunked = True
    return method, path, length, close, chunked


class UpstreamProtocol(asyncio.Protocol):
    """One client connection. Requests are answered strictly in order; while a delayed stream is
    being written, later pipelined requests wait in the buffer."""

    def __init__(self, replies: Replies, chunk_delay: float, slow: dict[bytes, tuple[Replies, float]]) -> None:
        self.replies = replies
        self.chunk_delay = chunk_delay
        self.slow = slow  # replies of slow-MSxN models, built on first use, shared by connections
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.streaming: asyncio.Task | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming is not None:
            self.streaming.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._process()

    def _process(self) -> None:
        while self.streaming is None and not self.transport.is_closing():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._send(self.replies.head_too_large, close=True)
                return
            try:
                method, path, length, close, chunked = _parse_head(bytes(self.buffer[:end]))
            except ValueError:
                self._send(self.replies.bad_request, close=True)
                return
            if chunked:
                self._send(self.replies.length_required, close=True)
                return
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self._handle(method, path.split(b"?", 1)[0], body, close)

    def _handle(self, method: bytes, path: bytes, body: bytes, close: bool) -> None:
        if method == b"POST" and path in (b"/v1/chat/completions", b"/chat/completions"):
            try:
                request = json.loads(body)
                stream = request.get("stream") is True
                model = request.get("model")
            except (ValueError, AttributeError):
                self._send(self.replies.bad_json, close)
                return
            replies, delay = self.replies, self.chunk_delay
            if isinstance(model, str) and "slow-" in model:
                replies, delay = self._slow(model)
            if not stream:
                self._send(replies.completion, close)
            elif delay <= 0:
                self._send(replies.stream_all, close)
            else:
                self.streaming = asyncio.get_running_loop().create_task(self._stream_slowly(replies, delay, close))
        elif method == b"GET" and path in (b"/v1/models", b"/models"):
            self._send(self.replies.models, close)
        else:
            self._send(self.replies.not_found, close)

    def _slow(self, model: str) -> tuple[Replies, float]:
        match = SLOW_MODEL.search(model)
        if match is None:
            return self.replies, self.chunk_delay
        key = match.group(0).encode()
        if key not in self.slow:
            delay_ms, chunks = int(match.group(1)), min(max(1, int(match.group(2))), MAX_SLOW_CHUNKS)
            self.slow[key] = (Replies(chunks), delay_ms / 1000)
        return self.slow[key]

    def _send(self, data: bytes, close: bool) -> None:
        self.transport.write(data)
        if close:
            self.transport.close()

    async def _stream_slowly(self, replies: Replies, delay: float, close: bool) -> None:
        self.transport.write(replies.stream_head + replies.stream_events[0])
        for event in replies.stream_events[1:]:
            await asyncio.sleep(delay)
            if self.transport.is_closing():
                return
            self.transport.write(event)
        self._send(replies.stream_end, close)
        self.streaming = None
        self._process()


async def serve(host: str, port: int, chunks: int = 5, chunk_delay_ms: float = 0) -> asyncio.Server:
    """Start listening and return the server (the caller closes it)."""
    replies, slow = Replies(chunks), {}
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: UpstreamProtocol(replies, chunk_delay_ms / 1000, slow), host, port, backlog=4096, reuse_address=True
    )


async def _main(args: argparse.Namespace) -> None:
    server = await serve(args.host, args.port, args.chunks, args.chunk_delay_ms)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI upstream for benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=5, help="SSE chunks per streamed reply (default 5)")
    parser.add_argument("--chunk-delay-ms", type=float, default=0, help="pause between SSE chunks (default 0)")
    args = parser.parse_args()
    if args.chunks < 1:
        parser.error("--chunks must be at least 1")
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_main(args))


if __name__ == "__main__":
    main()
