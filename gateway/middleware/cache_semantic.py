"""Semantic cache matching (`cache.mode: semantic`): a stored answer to a request that says
nearly the same thing.

Two requests match when everything but the last user message is identical (model, tools,
parameters, the system prompt and the conversation before it: their hash is the *group*), and
the embeddings of their last user messages have a cosine similarity of at least `threshold`.
The embedding comes from the route named in `cache.semantic.route`, called like any route of
the graph (its retries, fallbacks and timeouts apply; its usage is not billed to the caller).

Vectors are unit-normalised float32. The search is numpy over a group's vectors (see
docs/caching.md for the measurement against sqlite-vec).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


from ..errors import GatewayError, UpstreamError
from ..graph.context import RequestContext
from ..logs import get_logger

log = get_logger("gateway.cache")

DEFAULT_THRESHOLD = 0.95


@dataclass(frozen=True, slots=True)
class SemanticSettings:
    route: str
    threshold: float


def split_prompt(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(the last user message's text, the body without it); None when the request has no
    user message with text (it is then matched exactly only)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, dict) and message.get("role") == "user":
            text = _text(message.get("content"))
            if not text:
                return None
            rest = {**body, "messages": [*messages[:i], {**message, "content": None},
                                         *messages[i + 1:]]}
            return text, rest
    return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content
                 if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) == len(content):  # images or audio: not matched by meaning
            return "\n".join(parts)
    return ""


async def embed(ctx: RequestContext, settings: SemanticSettings, routes: Any,
                text: str) -> list[float] | None:
    """The embedding of ``text`` through the semantic route; None when it fails (then the
    request is a plain miss: a cache must never fail a request)."""
    route = routes.get(settings.route)
    if route is None:
        return None
    sub = RequestContext(endpoint="embeddings", body={"model": settings.route, "input": text},
                         route=settings.route, request_id=ctx.request_id, node=route.node,
                         deadline=ctx.deadline, rng=ctx.rng)
    try:
        response = await route.node.handle(sub)
    except (UpstreamError, GatewayError) as exc:
        log.warning("cache_embedding_failed", route=settings.route, error=exc.message)
        return None
    try:
        vector = response.json()["data"][0]["embedding"]
    except (KeyError, IndexError, TypeError):
        log.warning("cache_embedding_failed", route=settings.route,
                    error="the answer has no data[0].embedding")
        return None
    return vector if isinstance(vector, list) and vector else None
