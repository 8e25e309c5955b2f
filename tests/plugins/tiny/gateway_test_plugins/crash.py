"""Raises where it is told to, to test that a plugin failure never takes the server down."""

from gateway import hookimpl


@hookimpl
def plugin_config_schema():
    return {
        "type": "object",
        "properties": {"where": {"enum": ["setup", "request", "response", "chunk", "check"]},
                       "after_chunks": {"type": "integer"}},
    }


class Chunks:
    """Chunks seen in this request (ctx.state_for(Chunks))."""

    def __init__(self):
        self.seen = 0


class Crash:
    def __init__(self, where: str, after_chunks: int):
        self.where = where
        self.after = after_chunks

    async def on_request(self, ctx):
        if self.where == "request":
            raise RuntimeError("request hook exploded")

    async def on_response(self, ctx, response):
        if self.where == "response":
            raise ValueError("response hook exploded")
        return response

    def on_chunk(self, ctx, chunk):
        if self.where == "chunk":
            chunks = ctx.state_for(Chunks) or ctx.keep_state(Chunks())
            chunks.seen += 1
            if chunks.seen > self.after:
                raise KeyError("chunk hook exploded")
        return chunk

    async def check(self, ctx, response):
        raise RuntimeError("check exploded")


def _make(config):
    where = config.get("where", "request")
    if where == "setup":
        raise RuntimeError("cannot set up: missing license file")
    return Crash(where, config.get("after_chunks", 2))


@hookimpl
def request_middleware(config, context):
    return _make(config)


@hookimpl
def response_middleware(config, context):
    return _make(config)


@hookimpl
def attempt_check(config, context):
    return _make(config) if config.get("where") == "check" else None
