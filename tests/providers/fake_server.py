"""What the native-provider fakes share: an aiohttp app on a free loopback port in a background
thread, a record of every request, per-model scripts, and the fake model's behaviour.

The fake "model" answers deterministically from the request it got:
- tools offered, tool use allowed, last turn from the user: it calls every offered tool (in
  parallel when several), with arguments made from the required properties of each schema;
- last turn a tool result: it answers text naming the results it got;
- otherwise: ``<provider> says: <the last user text>`` (a JSON object in JSON mode).
A Script queued for a model overrides that for one request (an error, a finish reason, ...).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..background_app import BackgroundApp


@dataclass
class Script:
    """One request's deviation from the default behaviour."""

    status: int = 200  # answer this HTTP error, with the provider's real error body
    message: str | None = None  # the error message (default: the provider's usual one)
    text: str | None = None  # answer this text
    tool_calls: list[tuple[str, dict]] | None = None  # answer these calls
    finish: str | None = None  # the provider-native finish reason to report
    reasoning: str | None = None  # a thought / reasoning part before the answer
    stream_error_after: int | None = None  # streams: the provider's error event after N events
    stream_error: str | None = None  # which in-stream error (provider-specific name)
    cut_after: int | None = None  # streams: close the connection after N events
    headers: dict[str, str] = field(default_factory=dict)
    block: bool = False  # gemini: promptFeedback.blockReason
    usage: tuple[int, int] | None = None  # report exactly these (prompt, completion) tokens


@dataclass
class Recorded:
    path: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Answer:
    text: str | None
    calls: list[tuple[str, dict]]
    reasoning: str | None
    prompt_tokens: int
    completion_tokens: int


class FakeServer(BackgroundApp):
    provider = "fake"
    client_max_size = 32 * 1024 * 1024

    def __init__(self) -> None:
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.requests: list[Recorded] = []
        self.rejections: list[tuple[int, Any]] = []  # validation failures sent back
        self._scripts: dict[str, deque[Script]] = defaultdict(deque)

    # -- control ---------------------------------------------------------------------------

    def script(self, model: str, *scripts: Script | int) -> None:
        for s in scripts:
            self._scripts[model].append(Script(status=s) if isinstance(s, int) else s)

    def next_script(self, model: str) -> Script:
        queue = self._scripts.get(model)
        return queue.popleft() if queue else Script()

    async def record(self, request: web.Request) -> tuple[bytes, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        self.requests.append(Recorded(request.path, request.raw_path, dict(request.query),
                                      dict(request.headers), body))
        return raw, body

    def reject(self, status: int, body: Any, headers: dict[str, str] | None = None,
               scripted: bool = False) -> web.Response:
        """An error answer; unless a test scripted it, it is recorded in ``rejections``."""
        if not scripted:
            self.rejections.append((status, body))
        return web.json_response(body, status=status, headers=headers)


def answer(provider: str, *, tools: list[tuple[str, dict]], tool_mode: str, allowed: list[str] | None,
           tool_results: list[Any] | None, user_text: str, json_mode: bool, prompt_chars: int,
           script: Script) -> Answer:
    """The fake model's answer to one request (see the module docstring)."""
    calls: list[tuple[str, dict]] = []
    text: str | None = None
    if script.tool_calls is not None:
        calls = script.tool_calls
    elif script.text is not None:
        text = script.text
    elif tools and tool_mode != "none" and tool_results is None:
        chosen = [t for t in tools if allowed is None or t[0] in allowed]
        calls = [(name, arguments_for(schema)) for name, schema in chosen]
    elif tool_results is not None:
        text = f"{provider} got tool results: " + "; ".join(
            json.dumps(r, sort_keys=True) if not isinstance(r, str) else r for r in tool_results)
    else:
        text = f"{provider} says: {user_text}"
    if json_mode and text is not None and script.text is None:
        text = json.dumps({"answer": text})
    out_words = len((text or "").split()) + 3 * len(calls)
    prompt_tokens, completion_tokens = script.usage or (max(1, prompt_chars // 4), max(1, out_words))
    return Answer(text, calls, script.reasoning, prompt_tokens, completion_tokens)


def arguments_for(schema: dict | None) -> dict:
    """Arguments for a tool: each required property gets a value of its type."""
    schema = schema or {}
    props = schema.get("properties") or {}
    out: dict[str, Any] = {}
    for name in schema.get("required") or []:
        kind = str((props.get(name) or {}).get("type", "string")).lower()
        out[name] = {"string": f"{name}-1", "integer": 1, "number": 1.5, "boolean": True,
                     "array": [], "object": {}}.get(kind, f"{name}-1")
    return out


def words(text: str) -> list[str]:
    """Text cut into stream pieces: one word each, the spaces kept."""
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)]


def now() -> float:
    return time.time()
