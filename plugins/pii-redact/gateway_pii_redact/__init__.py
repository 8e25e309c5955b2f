"""pii-redact: finds e-mail addresses, phone numbers, card numbers, IBANs and IP addresses in
prompts, and masks them before the request goes upstream (putting them back into the answer
with ``restore: true``), refuses the request (``block``), or only counts them (``log``).

Per-request state is a ``PiiState`` (``ctx.state_for(PiiState)``), in objects whose repr
shows no value; what the plugin logs and the counts it keeps never contain a value.

Prompts longer than THREAD_ABOVE characters in all are searched in a worker thread: the
search is linear but runs at about 1 µs a character on digit-heavy text, so a 20 MB prompt
would otherwise hold the event loop, and every other request of the worker, for many seconds.
"""

from __future__ import annotations

import asyncio

import structlog

from gateway import hookimpl
from gateway.errors import GatewayError

from .detect import KINDS, find, may_contain
from .mask import Vault, count, map_prompts, ordered, prompt_texts
from .stream import StreamRestorer

__all__ = ["KINDS", "PiiState", "find"]

log = structlog.get_logger("gateway.plugins.pii-redact")

_FIELDS = {"chat": "messages", "completions": "prompt", "embeddings": "input"}
THREAD_ABOVE = 64 * 1024  # characters of prompt text

CONFIG_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["mode"],
    "properties": {
        "mode": {
            "enum": ["mask", "block", "log"],
            "description": "mask: replace values with placeholders before the request goes "
                           "upstream; block: refuse the request (400); log: only count.",
        },
        "kinds": {
            "type": "array",
            "items": {"enum": list(KINDS)},
            "uniqueItems": True,
            "minItems": 1,
            "description": "What to look for. Default: all of email, phone, card, iban, ip.",
        },
        "restore": {
            "type": "boolean",
            "default": False,
            "description": "mask only: put the original values back into the answer.",
        },
    },
}


class PiiState:
    """What this plugin keeps for one request (``ctx.state_for(PiiState)``, for other plugins
    too): findings per kind (never a value), the Vault when answers are restored, and the
    StreamRestorer of a streamed answer."""

    __slots__ = ("counts", "vault", "stream")

    def __init__(self, counts: dict[str, int], vault: Vault | None = None):
        self.counts = counts
        self.vault = vault
        self.stream: StreamRestorer | None = None


class Settings:
    __slots__ = ("name", "mode", "kinds", "restore")

    def __init__(self, config: dict, name: str):
        self.name = name
        self.mode: str = config["mode"]
        self.kinds: tuple[str, ...] = tuple(k for k in KINDS if k in config.get("kinds", KINDS))
        self.restore: bool = bool(config.get("restore", False))
        if self.restore and self.mode != "mask":
            raise ValueError(f"restore: true works only with mode: mask (mode is {self.mode!r})")


class Redactor:
    """The request side: runs before the graph, on every request."""

    def __init__(self, settings: Settings):
        self.s = settings

    async def on_request(self, ctx) -> None:
        texts = prompt_texts(ctx.endpoint, ctx.body)
        if not any(map(may_contain, texts)):  # nothing to find (no text, or most prompts)
            return None
        s = self.s
        if sum(map(len, texts)) > THREAD_ABOVE:
            vault, body, counts = await asyncio.to_thread(self._search, ctx.endpoint, ctx.body,
                                                          texts)
        else:
            vault, body, counts = self._search(ctx.endpoint, ctx.body, texts)
        if vault is not None and counts:
            ctx.body = body
        if not counts:
            return None
        found = ordered(counts)
        ctx.keep_state(PiiState(found, vault if s.restore else None))
        log.info("pii_detected", plugin=s.name, action=s.mode, counts=found, route=ctx.route,
                 request_id=ctx.request_id)
        if s.mode == "block":
            raise GatewayError(
                400,
                f"The request contains personal data ({', '.join(found)}) and was not sent "
                "upstream. Remove it and try again.",
                code="pii_detected",
                param=_FIELDS.get(ctx.endpoint),
            )
        return None


    def _search(self, endpoint: str, body: dict, texts: list[str]
                ) -> tuple[Vault | None, dict, dict[str, int]]:
        """(the vault and the masked body, in mask mode; the counts by kind). Reads
        ``body`` and builds a new one, so that it may run in a worker thread."""
        if self.s.mode == "mask":
            vault = Vault(self.s.kinds, texts)
            return vault, map_prompts(endpoint, body, vault.mask), vault.counts
        return None, body, count(texts, self.s.kinds)


class Restorer:
    """The answer side (mask with restore): puts originals back, whole or streamed."""

    async def on_response(self, ctx, response):
        state = ctx.state_for(PiiState)
        vault = state.vault if state is not None else None
        if vault is None:
            return response
        body = response.json()  # shared with other middleware: changed only with set_json below
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list):
            return response
        changed = False
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                restored = vault.restore(message["content"])
                changed |= restored != message["content"]
                message["content"] = restored
            if isinstance(choice.get("text"), str):  # legacy completions
                restored = vault.restore(choice["text"])
                changed |= restored != choice["text"]
                choice["text"] = restored
        if changed:
            response.set_json(body)
        return response

    def on_chunk(self, ctx, chunk: bytes) -> bytes:
        state = ctx.state_for(PiiState)
        if state is None or state.vault is None:
            return chunk
        if state.stream is None:
            state.stream = StreamRestorer(state.vault)
        return state.stream.feed(chunk)

    def on_stream_end(self, ctx) -> bytes:
        state = ctx.state_for(PiiState)
        return state.stream.close() if state is not None and state.stream is not None else b""


@hookimpl
def plugin_config_schema():
    return CONFIG_SCHEMA


@hookimpl
def request_middleware(config, context):
    return Redactor(Settings(config, context.name))


@hookimpl
def response_middleware(config, context):
    settings = Settings(config, context.name)
    return Restorer() if settings.mode == "mask" and settings.restore else None
