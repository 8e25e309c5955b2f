"""Built-in plugin: the front doors (gateway/frontdoors/): Anthropic's Messages API at
/v1/messages and /v1/messages/count_tokens, /v1/rerank and /v1/moderations, and a provider's
own endpoints at /v1/passthrough/{provider}/{path}, served through the same graph as the
OpenAI endpoints. docs/frontdoors.md."""

from __future__ import annotations

from typing import Any

from .. import hookimpl
from ..frontdoors import messages, openai_shaped, passthrough
from ..hookspecs import PluginContext


@hookimpl
def api_routes(config: dict, context: PluginContext) -> list[Any]:
    return [*messages.routes(), *openai_shaped.routes(), *passthrough.routes()]
