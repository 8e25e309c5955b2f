"""The middleware chain, in process: order, changing the request, answering directly,
wrapping streams, refusing with GatewayError."""

from __future__ import annotations

import dataclasses

import httpx

from gateway.config.compiler import compile_bytes
from gateway.errors import GatewayError
from gateway.graph.pipeline import build_pipeline
from gateway.providers.base import UpstreamResponse
from gateway.server.app import create_app
from gateway.server.reload import GraphHolder, Reloader
from gateway.config.compiler import Runtime

CONFIG = b"""
version: 1
providers:
  demo: {type: mock}
routes:
  chat: {target: {provider: demo, model: m}}
"""


class Recorder:
    def __init__(self, name: str, trail: list):
        self.name, self.trail = name, trail

    async def __call__(self, ctx, call_next):
        self.trail.append(f"{self.name}:before")
        response = await call_next(ctx)
        self.trail.append(f"{self.name}:after")
        response.headers[f"x-{self.name}"] = "1"
        return response


class Rewrite:
    name = "rewrite"

    async def __call__(self, ctx, call_next):
        ctx.body = {**ctx.body, "messages": [{"role": "user", "content": "rewritten"}]}
        return await call_next(ctx)


class Answer:
    name = "answer"

    async def __call__(self, ctx, call_next):
        if ctx.metadata.get("cached"):
            return UpstreamResponse(200, body=b'{"cached": true}', target="cache")
        return await call_next(ctx)


class Refuse:
    name = "refuse"

    async def __call__(self, ctx, call_next):
        raise GatewayError(400, "refused by policy", code="refused")


class Upper:
    name = "upper"

    async def __call__(self, ctx, call_next):
        response = await call_next(ctx)
        if response.stream is not None:
            inner = response.stream

            async def shout():
                async for chunk in inner:
                    yield chunk.upper()

            response.stream = shout()
        return response


def client_with(*middleware) -> httpx.AsyncClient:
    graph = compile_bytes(CONFIG, "test.yaml", version=1)
    graph = dataclasses.replace(graph, middleware=middleware, handler=build_pipeline(middleware))
    reloader = Reloader("test.yaml", Runtime(), GraphHolder(graph))
    app = create_app(reloader, watch_config=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


def chat(stream: bool = False, metadata: str | None = None) -> dict:
    headers = {"x-gateway-metadata": metadata} if metadata else {}
    return {"json": {"model": "chat", "stream": stream,
                     "messages": [{"role": "user", "content": "hi"}]}, "headers": headers}


async def test_order_is_list_order_and_headers_reach_the_client():
    """Middleware runs in list order on the way in, reverse on the way out."""
    trail: list = []
    async with client_with(Recorder("a", trail), Recorder("b", trail)) as client:
        r = await client.post("/v1/chat/completions", **chat())
    assert trail == ["a:before", "b:before", "b:after", "a:after"]
    assert r.headers["x-a"] == "1" and r.headers["x-b"] == "1"


async def test_middleware_changes_the_request():
    """A change to ctx.body is what the provider sees."""
    async with client_with(Rewrite()) as client:
        r = await client.post("/v1/chat/completions", **chat())
    assert r.json()["choices"][0]["message"]["content"] == "Mock reply from m: rewritten"


async def test_middleware_answers_directly():
    """A middleware can answer without calling on (a cache hit)."""
    async with client_with(Answer()) as client:
        r = await client.post("/v1/chat/completions", **chat(metadata='{"cached": true}'))
        miss = await client.post("/v1/chat/completions", **chat())
    assert r.json() == {"cached": True}
    assert r.headers["x-gateway-target"] == "cache" and miss.headers["x-gateway-target"] == "demo/m"


async def test_middleware_refuses_in_openai_shape():
    """GatewayError from a middleware becomes an OpenAI-shaped error."""
    async with client_with(Refuse()) as client:
        r = await client.post("/v1/chat/completions", **chat())
    assert r.status_code == 400
    assert r.json()["error"] == {"message": "refused by policy", "type": "invalid_request_error",
                                 "code": "refused", "param": None}


async def test_middleware_wraps_streams_chunk_by_chunk():
    """A middleware can transform a stream as it flows."""
    async with client_with(Upper()) as client:
        r = await client.post("/v1/chat/completions", **chat(stream=True))
    events = [line for line in r.text.splitlines() if line.startswith("DATA: ")]
    assert len(events) > 5 and '"MODEL":"M"' in events[0]
    assert r.text == r.text.upper()
