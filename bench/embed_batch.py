"""Throughput of /v1/embeddings with and without micro-batching (a route's `batch:`).

The gateway's app runs in this process (httpx's ASGI transport) in front of a fake embeddings
upstream on loopback that costs what hosted ones do per call: a fixed latency per call plus a
little per input, at most a few calls at once (a connection or rate cap). Clients send
one-input requests from many concurrent workers; the same load runs against a route without
`batch:` and one with it. Prints requests/s, upstream calls and the ratio.

    python bench/embed_batch.py [--requests 2000] [--concurrency 64] [--call-ms 20]
                                [--input-ms 0.2] [--upstream-slots 4] [--max-size 64] [--max-wait-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from aiohttp import web

from gateway.config.compiler import Runtime, compile_bytes
from gateway.logs import configure
from gateway.server.app import create_app
from gateway.server.reload import GraphHolder, Reloader

CONFIG = """
version: 1
observability: {{request_log: false, metrics: false}}
providers:
  up: {{type: openai-compatible, base_url: "http://127.0.0.1:{port}/v1", max_connections: {slots}}}
routes:
  plain: {{target: {{provider: up, model: embed}}}}
  batched:
    target: {{provider: up, model: embed}}
    batch: {{max_size: {max_size}, max_wait: {max_wait_ms}ms}}
"""


class Upstream:
    def __init__(self, call_s: float, input_s: float, slots: int):
        self.call_s, self.input_s = call_s, input_s
        self.slots = asyncio.Semaphore(slots)
        self.calls = 0

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        async with self.slots:
            self.calls += 1
            await asyncio.sleep(self.call_s + self.input_s * len(inputs))
        data = [{"object": "embedding", "index": i, "embedding": [0.1] * 8}
                for i in range(len(inputs))]
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})


async def load(client: httpx.AsyncClient, route: str, requests: int, concurrency: int) -> float:
    """Seconds to get ``requests`` answers from ``concurrency`` workers."""
    left = iter(range(requests))

    async def worker() -> None:
        for i in left:
            r = await client.post("/v1/embeddings", json={"model": route, "input": f"text {i}"})
            r.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    configure("warning", json=True)
    upstream = Upstream(args.call_ms / 1000, args.input_ms / 1000, args.upstream_slots)
    app = web.Application()
    app.router.add_post("/v1/embeddings", upstream.embeddings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    text = CONFIG.format(port=port, slots=args.upstream_slots, max_size=args.max_size,
                         max_wait_ms=args.max_wait_ms)
    runtime = Runtime()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "gateway.yaml")
        Path(path).write_text(text)
        graph = compile_bytes(text.encode(), path, version=1, runtime=runtime)
        gateway = create_app(Reloader(path, runtime, GraphHolder(graph)), watch_config=False)
        results = {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway),
                                     base_url="http://127.0.0.1", timeout=60) as client:
            await load(client, "plain", 50, 8)  # warm-up: sessions, imports
            for route in ("plain", "batched"):
                upstream.calls = 0
                seconds = await load(client, route, args.requests, args.concurrency)
                results[route] = (args.requests / seconds, upstream.calls)
        await runtime.clients.close()
    await runner.cleanup()
    print(f"\nEmbeddings micro-batching: {args.requests} one-input requests, {args.concurrency} "
          f"concurrent; upstream {args.call_ms:g} ms/call + {args.input_ms:g} ms/input, "
          f"{args.upstream_slots} calls at once; batch max_size {args.max_size}, "
          f"max_wait {args.max_wait_ms:g}ms")
    print(f"{'route':<10}{'req/s':>10}{'upstream calls':>16}")
    for route, (rps, calls) in results.items():
        print(f"{route:<10}{rps:>10.0f}{calls:>16}")
    ratio = results["batched"][0] / results["plain"][0]
    print(f"throughput ratio batched/plain: {ratio:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--call-ms", type=float, default=20.0)
    parser.add_argument("--input-ms", type=float, default=0.2)
    parser.add_argument("--upstream-slots", type=int, default=4)
    parser.add_argument("--max-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    asyncio.run(main(parser.parse_args()))
