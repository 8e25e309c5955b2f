"""Stamps requests and answers: shows order, changes, whole answers and stream chunks."""

from gateway import hookimpl


@hookimpl
def plugin_config_schema():
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["value"],
        "properties": {"value": {"type": "string"}, "prefix": {"type": "string"}},
    }


class ChunkCounts(dict):
    """Chunks seen per stamp value, for this request (ctx.state_for(ChunkCounts))."""


class Stamp:
    def __init__(self, value: str, prefix: str):
        self.value = value
        self.prefix = prefix

    async def on_request(self, ctx):
        ctx.metadata = {**ctx.metadata, "stamps": ctx.metadata.get("stamps", []) + [self.value]}
        if self.prefix:
            messages = [dict(m) for m in ctx.body["messages"]]
            messages[-1]["content"] = f"{self.prefix} {messages[-1]['content']}"
            ctx.body = {**ctx.body, "messages": messages}
        return None

    async def on_response(self, ctx, response):
        order = response.headers.get("x-test-stamp")
        response.headers["x-test-stamp"] = f"{order},{self.value}" if order else self.value
        return response

    def on_chunk(self, ctx, chunk):
        counts = ctx.state_for(ChunkCounts)
        if counts is None:
            counts = ctx.keep_state(ChunkCounts())
        counts[self.value] = counts.get(self.value, 0) + 1
        return chunk

    def on_stream_end(self, ctx):
        seen = ctx.state_for(ChunkCounts)[self.value]
        return f": stamped {self.value} after {seen} chunks\n\n".encode()


@hookimpl
def request_middleware(config, context):
    return Stamp(config["value"], config.get("prefix", ""))


@hookimpl
def response_middleware(config, context):
    return Stamp(config["value"], config.get("prefix", ""))
