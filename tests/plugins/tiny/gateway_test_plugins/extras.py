"""Global hooks: a CLI subcommand and a provider type."""

import orjson

from gateway import hookimpl
from gateway.providers.base import Provider, UpstreamResponse


class EchoProvider(Provider):
    """Answers with the last message, reversed."""

    @classmethod
    def default_base_url(cls, type_name):
        return "echo://"

    async def send(self, request):
        text = request.body["messages"][-1]["content"][::-1]
        body = {"object": "chat.completion", "model": request.body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}]}
        return UpstreamResponse(200, body=orjson.dumps(body))


@hookimpl
def register_providers():
    return {"test-echo": EchoProvider}


@hookimpl
def register_commands(subparsers):
    p = subparsers.add_parser("test-hello", help="a command added by a plugin")
    p.add_argument("name")
    p.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)
