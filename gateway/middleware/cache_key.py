"""The simple cache's key: a canonical hash of what changes the answer.

Every field of the request body counts (model, messages, tools, temperature, max_tokens,
response_format, seed, and fields this gateway does not know yet), except those that only
change how the answer is delivered or who asked: ``stream``, ``stream_options``, ``user``,
``metadata`` and OpenAI's ``store`` / ``prompt_cache_key`` / ``safety_identifier`` /
``service_tier``. Key order and JSON spacing do not matter: the body is serialised with
sorted keys. The endpoint and the namespace are part of the hash, so a chat answer is never
served to a completions request, nor one namespace's answer to another; so are, on a route
whose conditions pick its target, the request fields they read (``branch``: see
cache.branch_of), so one branch's answer is never served to a request another branch takes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "store", "prompt_cache_key",
                     "safety_identifier", "service_tier"})


def request_key(endpoint: str, namespace: str, body: dict[str, Any], branch: bytes = b"") -> str:
    relevant = {k: v for k, v in body.items() if k not in IGNORED}
    digest = hashlib.sha256()
    digest.update(endpoint.encode())
    digest.update(b"\0")
    digest.update(namespace.encode())
    digest.update(b"\0")
    if branch:  # none on most routes: their keys stay as they were
        digest.update(branch)
        digest.update(b"\0")
    digest.update(orjson.dumps(relevant, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()
