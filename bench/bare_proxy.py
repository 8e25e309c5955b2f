"""Bare aiohttp pass-through: the floor reference row of the benchmark.

It does what any Python gateway must do at minimum (accept a request with aiohttp, forward it over a
pooled aiohttp client session, copy the reply back, streaming included) and nothing else, so the gap
between this row and the gateway's is the cost of the gateway's own features.

Usage: ``python bench/bare_proxy.py --port P --upstream http://127.0.0.1:U/v1``.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import ClientSession, TCPConnector, web


def make_app(upstream: str) -> web.Application:
    app = web.Application()

    async def open_session(app: web.Application) -> None:
        app["session"] = ClientSession(connector=TCPConnector(limit=0))

    async def close_session(app: web.Application) -> None:
        await app["session"].close()

    async def readyz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {"Content-Type": "application/json"}
        async with app["session"].post(f"{upstream}/chat/completions", data=body, headers=headers) as up:
            if up.content_type != "text/event-stream":
                return web.Response(status=up.status, body=await up.read(), content_type=up.content_type)
            reply = web.StreamResponse(status=up.status, headers={"Content-Type": "text/event-stream"})
            await reply.prepare(request)
            async for data in up.content.iter_any():
                await reply.write(data)
            await reply.write_eof()
            return reply

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def _main(args: argparse.Namespace) -> None:
    runner = web.AppRunner(make_app(args.upstream.rstrip("/")), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port, backlog=4096).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="Bare aiohttp pass-through to an OpenAI-compatible upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL ending in /v1")
    args = parser.parse_args()
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
