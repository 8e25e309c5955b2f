"""A tiny HTTP/1.1 client on raw asyncio streams: readiness, correctness checks and streaming TTFB.

Raw streams instead of an HTTP library keep the client's own overhead small and identical for every
system, and let us stamp the moment the first body byte arrives. It talks to 127.0.0.1 only, one
keep-alive connection at a time, and understands Content-Length and chunked replies.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


class ProbeError(Exception):
    """A system answered, but not with what an OpenAI client expects."""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    first_byte_s: float  # from sending the request to the first body byte
    total_s: float  # from sending the request to the last body byte


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def __aenter__(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    async def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Reply:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        started = time.perf_counter()
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        raw_head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")[:-2]
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            first, body_parts = await self._read_chunked()
        elif "content-length" in headers:
            first, body_parts = await self._read_length(int(headers["content-length"]))
        else:
            raise ProbeError(f"reply has neither Content-Length nor chunked encoding: {headers}")
        finished = time.perf_counter()
        return Reply(
            status=int(status_line.split()[1]),
            headers=headers,
            body=b"".join(body_parts),
            first_byte_s=(first or finished) - started,
            total_s=finished - started,
        )

    async def _read_chunked(self) -> tuple[float | None, list[bytes]]:
        first, parts = None, []
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                while (await self.reader.readline()) not in (b"\r\n", b""):  # trailers
                    pass
                return first, parts
            data = await self.reader.readexactly(size + 2)
            if first is None:
                first = time.perf_counter()
            parts.append(data[:-2])

    async def _read_length(self, length: int) -> tuple[float | None, list[bytes]]:
        if length == 0:
            return None, []
        data = await self.reader.read(length)
        if not data:
            raise asyncio.IncompleteReadError(b"", length)
        first = time.perf_counter()
        return first, [data, await self.reader.readexactly(length - len(data))]


def chat_body(model: str, stream: bool) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


async def wait_ready(port: int, path: str, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll GET path until it answers 200; give up after timeout_s or as soon as alive() is false."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise ProbeError("the process exited before it was ready")
        try:
            async with Connection(port) as conn:
                reply = await asyncio.wait_for(conn.request("GET", path), 2)
            if reply.status == 200:
                return
            last_error = f"status {reply.status}"
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
            last_error = repr(exc)
        await asyncio.sleep(0.05)
    raise ProbeError(f"GET {path} on port {port} not 200 within {timeout_s:.0f} s ({last_error})")


def _json_reply(reply: Reply, what: str) -> object:
    if reply.status != 200:
        raise ProbeError(f"{what}: status {reply.status}: {reply.body[:300]!r}")
    try:
        return json.loads(reply.body)
    except ValueError:
        raise ProbeError(f"{what}: body is not JSON: {reply.body[:300]!r}") from None


def parse_completion(reply: Reply) -> str:
    """The assistant's text of a non-streamed chat completion; ProbeError if it is not one."""
    data = _json_reply(reply, "chat completion")
    try:
        content = data["choices"][0]["message"]["content"] if data["object"] == "chat.completion" else None
    except (KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str) or not content:
        raise ProbeError(f"not a chat.completion with content: {reply.body[:300]!r}")
    return content


def parse_stream(reply: Reply) -> str:
    """The assistant's text of a streamed chat completion (SSE ending in [DONE]); ProbeError if not."""
    if reply.status != 200:
        raise ProbeError(f"stream: status {reply.status}: {reply.body[:300]!r}")
    if not reply.headers.get("content-type", "").startswith("text/event-stream"):
        raise ProbeError(f"stream: content-type is {reply.headers.get('content-type')!r}")
    events = [line[5:].strip() for line in reply.body.decode().splitlines() if line.startswith("data:")]
    if not events or events[-1] != "[DONE]":
        raise ProbeError(f"stream does not end with data: [DONE]: {reply.body[-300:]!r}")
    text = ""
    for event in events[:-1]:
        try:
            chunk = json.loads(event)
            if chunk["object"] != "chat.completion.chunk":
                raise ValueError
            text += "".join(choice["delta"].get("content") or "" for choice in chunk["choices"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ProbeError(f"not a chat.completion.chunk: {event[:300]!r}") from None
    if not text:
        raise ProbeError("stream carried no content")
    return text


async def check_chat(
    port: int, model: str, headers: Mapping[str, str] | None = None, expect: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """Send one plain and one streamed chat completion; return both texts or raise ProbeError.

    ``expect`` names response headers the plain reply must carry, with their values."""
    async with Connection(port) as conn:
        reply = await conn.request("POST", "/v1/chat/completions", chat_body(model, False), headers)
        plain = parse_completion(reply)
        for name, value in (expect or {}).items():
            if reply.headers.get(name.lower()) != value:
                raise ProbeError(f"header {name}: expected {value!r}, got {reply.headers.get(name.lower())!r}")
        streamed = parse_stream(await conn.request("POST", "/v1/chat/completions", chat_body(model, True), headers))
    return plain, streamed


@dataclass
class Ttfb:
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float


async def measure_ttfb(
    port: int, model: str, requests: int, warmup: int = 10, headers: Mapping[str, str] | None = None
) -> Ttfb:
    """Time to first body byte of streamed completions, one request at a time on one connection."""
    body = chat_body(model, True)
    samples, errors = [], 0
    async with Connection(port) as conn:
        for i in range(warmup + requests):
            reply = await conn.request("POST", "/v1/chat/completions", body, headers)
            if i < warmup:
                continue
            if reply.status == 200 and reply.body.rstrip().endswith(b"data: [DONE]"):
                samples.append(reply.first_byte_s * 1000)
            else:
                errors += 1
    if len(samples) < 2:
        raise ProbeError(f"TTFB: {errors} of {requests} streamed requests failed")
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return Ttfb(requests, errors, statistics.median(samples), cuts[98])
