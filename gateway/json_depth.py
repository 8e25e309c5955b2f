"""How deep a JSON value nests. orjson reads up to 1024 levels but writes at most 254, and the
gateway writes every body again (to the upstream, the cache key, the request log, a batch's
results): a body nested deeper than it can write was a 500. Bodies and batch lines are
refused past ``MAX_DEPTH`` levels instead, with room left for what the gateway wraps around
them."""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 128  # objects and arrays inside each other, the outermost one included


def too_deep(raw: bytes, value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (parsed from ``raw``) nests more than ``limit`` levels. Free for
    bodies with fewer brackets than the limit (a count in C); a walk over the containers
    otherwise."""
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return False
