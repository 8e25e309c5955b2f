"""A fake of Anthropic's Message Batches API on a loopback port, checking requests as the real
one does (x-api-key, anthropic-version, the body's shape, custom_id's pattern, no stream):
POST /v1/messages/batches, GET /v1/messages/batches/{id}, POST .../cancel, GET .../results,
DELETE /v1/messages/batches/{id} (once ended).

``finish(batch_id)`` ends a batch as Anthropic would: a succeeded message per request (its
text ``answer <custom_id>``; a forced tool is called with ``{"answer": <custom_id>}``), an
errored result for custom_ids starting with "fail"; after a cancel, every request but the
first is canceled. Results are served in reverse order (Anthropic does not keep the order),
at ``results_base`` (this server unless a test points it elsewhere). ``seen`` records each
request's method, path and headers."""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from .background_app import BackgroundApp

KEY = "sk-ant-fake-batch-secret"
VERSION = "2023-06-01"
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}},
                             status=status)


class FakeMessageBatches(BackgroundApp):
    client_max_size = 64 * 1024**2

    def __init__(self) -> None:
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.results_base = self.base_url
        self.batches: dict[str, dict[str, Any]] = {}
        self.requests: dict[str, list[dict[str, Any]]] = {}  # batch id -> its requests
        self.results: dict[str, bytes] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self._ids = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages/batches", self._create)
        app.router.add_get("/v1/messages/batches/{id}", self._retrieve)
        app.router.add_post("/v1/messages/batches/{id}/cancel", self._cancel)
        app.router.add_get("/v1/messages/batches/{id}/results", self._results)
        app.router.add_delete("/v1/messages/batches/{id}", self._delete)

    def _refused(self, request: web.Request) -> web.Response | None:
        self.seen.append((request.method, request.path, dict(request.headers)))
        if request.headers.get("x-api-key") != KEY:
            return _error(401, "authentication_error", "invalid x-api-key")
        if request.headers.get("anthropic-version") != VERSION:
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        return None

    def finish(self, batch_id: str) -> None:
        batch = self.batches[batch_id]
        cancelled = batch["cancel_initiated_at"] is not None
        lines, counts = [], dict.fromkeys(batch["request_counts"], 0)
        for n, request in enumerate(self.requests[batch_id]):
            custom_id, params = request["custom_id"], request["params"]
            if cancelled and n > 0:
                result: dict[str, Any] = {"type": "canceled"}
            elif custom_id.startswith("fail"):
                result = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "invalid_request_error", "message": "refused by the fake"}}}
            else:
                choice = params.get("tool_choice") or {}
                if choice.get("type") == "tool":
                    content = [{"type": "tool_use", "id": f"toolu_{n}", "name": choice["name"],
                                "input": {"answer": custom_id}}]
                    stop = "tool_use"
                else:
                    content, stop = [{"type": "text", "text": f"answer {custom_id}"}], "end_turn"
                result = {"type": "succeeded", "message": {
                    "id": f"msg_{n}", "type": "message", "role": "assistant",
                    "model": params["model"], "content": content, "stop_reason": stop,
                    "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 5}}}
            counts[result["type"]] += 1
            lines.append({"custom_id": custom_id, "result": result})
        self.results[batch_id] = b"".join(json.dumps(x).encode() + b"\n" for x in reversed(lines))
        batch.update(processing_status="ended", request_counts=counts,
                     ended_at=_iso(CREATED + timedelta(hours=1)),
                     results_url=f"{self.results_base}/v1/messages/batches/{batch_id}/results")

    async def _create(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        if request.content_type != "application/json":
            return _error(400, "invalid_request_error", "the body must be JSON")
        body = await request.json()
        requests = body.get("requests") if isinstance(body, dict) else None
        if set(body) != {"requests"} or not isinstance(requests, list) or not requests:
            return _error(400, "invalid_request_error", "requests: a non-empty list is required")
        if len(requests) > 100_000:
            return _error(400, "invalid_request_error", "at most 100000 requests")
        ids = set()
        for i, item in enumerate(requests):
            problem = self._problem(item)
            if problem is None and item["custom_id"] in ids:
                problem = "custom_id must be unique"
            if problem is not None:
                return _error(400, "invalid_request_error", f"requests.{i}: {problem}")
            ids.add(item["custom_id"])
        batch_id = f"msgbatch_{next(self._ids):04d}"
        self.requests[batch_id] = requests
        self.batches[batch_id] = {
            "id": batch_id, "type": "message_batch", "processing_status": "in_progress",
            "request_counts": {"processing": len(requests), "succeeded": 0, "errored": 0,
                               "canceled": 0, "expired": 0},
            "ended_at": None, "created_at": _iso(CREATED),
            "expires_at": _iso(CREATED + timedelta(hours=24)), "archived_at": None,
            "cancel_initiated_at": None, "results_url": None}
        return web.json_response(self.batches[batch_id])

    @staticmethod
    def _problem(item: Any) -> str | None:
        if not isinstance(item, dict) or set(item) != {"custom_id", "params"}:
            return "each request is {custom_id, params}"
        if not isinstance(item["custom_id"], str) or not CUSTOM_ID.fullmatch(item["custom_id"]):
            return "custom_id: 1-64 letters, digits, '_' or '-'"
        params = item["params"]
        if not isinstance(params, dict) or not isinstance(params.get("model"), str):
            return "params.model: a string is required"
        if not isinstance(params.get("max_tokens"), int) or params["max_tokens"] < 1:
            return "params.max_tokens: a positive integer is required"
        messages = params.get("messages")
        if not isinstance(messages, list) or not messages or any(
                not isinstance(m, dict) or m.get("role") not in ("user", "assistant")
                or "content" not in m for m in messages):
            return "params.messages: a list of user and assistant messages is required"
        if params.get("stream"):
            return "params.stream: streaming is not supported in batches"
        return None

    def _batch(self, request: web.Request) -> dict[str, Any] | None:
        return self.batches.get(request.match_info["id"])

    async def _retrieve(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        batch = self._batch(request)
        if refused is not None or batch is None:
            return refused or _error(404, "not_found_error", "no such batch")
        return web.json_response(batch)

    async def _cancel(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        batch = self._batch(request)
        if refused is not None or batch is None:
            return refused or _error(404, "not_found_error", "no such batch")
        if batch["processing_status"] == "in_progress":
            batch.update(processing_status="canceling",
                         cancel_initiated_at=_iso(CREATED + timedelta(minutes=5)))
        return web.json_response(batch)

    async def _delete(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        batch = self._batch(request)
        if refused is not None or batch is None:
            return refused or _error(404, "not_found_error", "no such batch")
        if batch["processing_status"] != "ended":
            return _error(400, "invalid_request_error", "only an ended batch can be deleted")
        del self.batches[batch["id"]]
        self.results.pop(batch["id"], None)
        return web.json_response({"id": batch["id"], "type": "message_batch_deleted"})

    async def _results(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        found = self.results.get(request.match_info["id"])
        if refused is not None or found is None:
            return refused or _error(404, "not_found_error", "the batch has not ended")
        response = web.StreamResponse(headers={"Content-Type": "application/binary"})
        await response.prepare(request)
        for start in range(0, len(found), 1000):  # in pieces, as a long file arrives
            await response.write(found[start:start + 1000])
        await response.write_eof()
        return response
