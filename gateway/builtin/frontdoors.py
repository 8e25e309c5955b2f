"""Built-in plugin: the front doors (gateway/frontdoors/): Anthropic's Messages API at
/v1/messages and /v1/messages/count_tokens, OpenAI's Responses API at /v1/responses,
/v1/rerank and /v1/moderations, and a provider's own endpoints at
/v1/passthrough/{provider}/{path}, served through the same graph as the OpenAI endpoints.
docs/frontdoors.md."""

from __future__ import annotations

from typing import Any

from .. import hookimpl
from ..frontdoors import messages, openai_shaped, passthrough, responses
from ..frontdoors.response_store import DEFAULT_RETENTION, ResponseStore
from ..hookspecs import PluginContext
from ..middleware.limits import Limits
from ..store import responses_db
from ..units import seconds


def response_store(context: PluginContext) -> ResponseStore:
    """The process's responses.db store (kept across reloads), with the config's retention."""
    path = responses_db.path(context.data_dir)
    store = context.state.acquire(("responses-store", path), lambda: ResponseStore(path))
    section = context.gateway_config.get("responses") or {}
    store.configure(seconds(section.get("retention", DEFAULT_RETENTION)))
    return store


@hookimpl
def api_routes(config: dict, context: PluginContext) -> list[Any]:
    return [*messages.routes(), *responses.routes(response_store(context), Limits(context)),
            *openai_shaped.routes(), *passthrough.routes()]
