"""Bare Starlette + uvicorn with httptools (uvloop) + aiohttp pass-through: the floor for the
gateway's own stack on its default engine.

The same framework, server and client as `gateway serve` and nothing else (no routing, no
features), so the gap between this row and the gateway's is what the gateway's own logic costs.

Usage: ``python bench/bare_starlette.py --port P --upstream http://127.0.0.1:U/v1``.
"""

from __future__ import annotations

import argparse
import contextlib

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


def make_app(upstream: str) -> Starlette:
    pool: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        pool["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await pool["session"].close()

    async def chat(request):
        up = await pool["session"].post(f"{upstream}/chat/completions", data=await request.body(),
                                        headers={"Content-Type": "application/json"})
        if up.content_type != "text/event-stream":
            async with up:
                return Response(await up.read(), up.status, media_type=up.content_type)

        async def relay():
            async with up:
                async for data in up.content.iter_any():
                    yield data

        return StreamingResponse(relay(), up.status, media_type="text/event-stream")

    async def readyz(request):
        return PlainTextResponse("ok")

    routes = [Route("/readyz", readyz), Route("/v1/chat/completions", chat, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)


def _main(args: argparse.Namespace) -> None:
    """uvicorn as the gateway runs it (gateway/server/engines/uvicorn_engine.py), less the
    header timer; uvicorn's own SIGTERM handling stops it."""
    uvicorn.run(make_app(args.upstream.rstrip("/")), host=args.host, port=args.port, loop="uvloop",
                http="httptools", log_level="warning", access_log=False, server_header=False,
                proxy_headers=False, timeout_keep_alive=75)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Bare Starlette pass-through to an OpenAI-compatible upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL ending in /v1")
    _main(parser.parse_args())
