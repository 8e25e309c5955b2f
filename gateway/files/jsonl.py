"""JSONL checks of uploaded files, line by line, fed in chunks (never the whole file):

- ``batch``: at most ``MAX_REQUESTS`` lines, each a JSON object with a non-empty string
  ``custom_id`` (unique in the file), ``method`` POST, a ``url`` the gateway batches (the
  same on every line) and a ``body`` object with a string ``model``;
- ``fine-tune``: each line a JSON object with a ``messages`` list (chat), ``prompt`` and
  ``completion`` (completions) or ``input`` (preference tuning).

Blank lines are skipped. Errors name the line (1-based); the first ``MAX_ERRORS`` are kept.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..json_depth import MAX_DEPTH, too_deep

BATCH_URLS = ("/v1/chat/completions", "/v1/embeddings", "/v1/completions")
MAX_LINE = 16 * 1024 * 1024  # bytes of one line
MAX_ERRORS = 10
# Requests of one batch file (OpenAI's limit too): checking keeps every custom_id in memory,
# about 120 bytes each; 512 MB of short lines would have held most of a gigabyte.
MAX_REQUESTS = 50_000
CHECKED_PURPOSES = ("batch", "fine-tune")


class LineCheck:
    def __init__(self, purpose: str):
        self.purpose = purpose
        self.errors: list[str] = []
        self.lines = 0  # requests (non-blank lines) seen
        self.url: str | None = None  # batch: the url of every line
        self._number = 0
        self._partial = bytearray()
        self._custom_ids: dict[str, int] = {}
        self._stopped = False  # past MAX_REQUESTS: nothing more is read

    @property
    def full(self) -> bool:
        return self._stopped or len(self.errors) >= MAX_ERRORS

    def feed(self, data: bytes) -> None:
        start = 0
        while not self.full:
            end = data.find(b"\n", start)
            if end < 0:
                self._partial += data[start:]
                if len(self._partial) > MAX_LINE:
                    self._error(self._number + 1, f"longer than {MAX_LINE} bytes")
                    self._partial.clear()
                return
            if self._partial:
                self._partial += data[start:end]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = data[start:end]
            self._line(line)
            start = end + 1

    def finish(self) -> None:
        if self._partial and not self.full:
            self._line(bytes(self._partial))
        self._partial.clear()
        if not self.lines and not self.errors:
            self.errors.append("the file holds no requests (it is empty)")

    def _error(self, number: int, message: str) -> None:
        if not self.full:
            self.errors.append(f"line {number}: {message}")

    def _line(self, raw: bytes) -> None:
        self._number += 1
        if not raw.strip():
            return
        if len(raw) > MAX_LINE:
            return self._error(self._number, f"longer than {MAX_LINE} bytes")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return self._error(self._number, f"not valid JSON ({exc})")
        if not isinstance(value, dict):
            return self._error(self._number, "must be a JSON object")
        if too_deep(raw, value):
            return self._error(self._number, f"nests deeper than {MAX_DEPTH} levels")
        self.lines += 1
        if self.purpose == "batch" and self.lines > MAX_REQUESTS:
            self._error(self._number, f"a batch file holds at most {MAX_REQUESTS} requests: "
                        "split it into several batches")
            self._stopped = True
            return
        problem = (self._batch(value) if self.purpose == "batch" else self._fine_tune(value))
        if problem:
            self._error(self._number, problem)

    def _batch(self, line: dict[str, Any]) -> str | None:
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            return "'custom_id' must be a non-empty string"
        if custom_id in self._custom_ids:
            return (f"custom_id {custom_id!r} is used already on line "
                    f"{self._custom_ids[custom_id]}: each must be unique")
        self._custom_ids[custom_id] = self._number
        if line.get("method") != "POST":
            return "'method' must be \"POST\""
        url = line.get("url")
        if url not in BATCH_URLS:
            return f"'url' must be one of {', '.join(BATCH_URLS)}, not {url!r}"
        if self.url is None:
            self.url = url
        elif url != self.url:
            return f"'url' is {url}, but earlier lines use {self.url}: one endpoint per batch"
        body = line.get("body")
        if not isinstance(body, dict):
            return "'body' must be a JSON object (the request)"
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "'body.model' must be a non-empty string (the route)"
        if body.get("stream"):
            return "'body.stream' cannot be true in a batch"
        return None

    @staticmethod
    def _fine_tune(line: dict[str, Any]) -> str | None:
        messages = line.get("messages")
        if messages is not None:
            if not isinstance(messages, list) or not messages or not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
                return "'messages' must be a non-empty list of objects with a 'role'"
            return None
        if isinstance(line.get("prompt"), str) and isinstance(line.get("completion"), str):
            return None
        if "input" in line:
            return None
        return ("must hold 'messages' (chat), 'prompt' and 'completion', or 'input' "
                "(preference)")
