"""A fake of OpenAI's Batch API on a loopback port: POST /v1/files (multipart), GET
/v1/files/{id}/content, DELETE /v1/files/{id}, POST /v1/batches, GET /v1/batches/{id}, POST
/v1/batches/{id}/cancel. ``finish(batch_id)`` completes a batch as OpenAI would: an output file
with one answer per line (usage: USAGE) and an error file for lines whose custom_id starts
with "fail". ``deleted`` lists the files deleted (in order); ``fail_deletes`` refuses that many
DELETEs first (with ``delete_status``, 500), ``gone`` keeps what was deleted; ``refuse_batches`` makes POST /v1/batches answer 400."""

from __future__ import annotations

import itertools
import json
from typing import Any

from aiohttp import web

from .background_app import BackgroundApp

KEY = "sk-upstream-batch-secret"
USAGE = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}


class FakeBatchAPI(BackgroundApp):
    def __init__(self) -> None:
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self.deleted: list[str] = []
        self.gone: dict[str, dict[str, Any]] = {}  # the deleted files
        self.fail_deletes = 0
        self.delete_status = 500
        self.refuse_batches = False

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}/content", self._content)
        app.router.add_delete("/v1/files/{id}", self._delete)
        app.router.add_post("/v1/batches", self._create)
        app.router.add_get("/v1/batches/{id}", self._retrieve)
        app.router.add_post("/v1/batches/{id}/cancel", self._cancel)

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {KEY}"

    def finish(self, batch_id: str) -> None:
        batch = self.batches[batch_id]
        lines = [json.loads(line) for line in
                 self.files[batch["input_file_id"]]["content"].splitlines() if line.strip()]
        out, err = [], []
        for n, line in enumerate(lines):
            if line["custom_id"].startswith("fail"):
                err.append({"id": f"batch_req_{n}", "custom_id": line["custom_id"],
                            "response": None,
                            "error": {"code": "invalid", "message": "refused by the fake"}})
                continue
            out.append({"id": f"batch_req_{n}", "custom_id": line["custom_id"], "error": None,
                        "response": {"status_code": 200, "request_id": f"req_{n}", "body": {
                            "object": "chat.completion", "model": line["body"]["model"],
                            "usage": USAGE,
                            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                "role": "assistant", "content": f"answer {n}"}}]}}})
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                file_id = f"file-out{next(self._ids)}"
                self.files[file_id] = {"purpose": "batch_output", "content": b"".join(
                    json.dumps(r).encode() + b"\n" for r in rows)}
                batch[name] = file_id
        batch.update(status="completed", completed_at=100, finalizing_at=99,
                     request_counts={"total": len(lines), "completed": len(out),
                                     "failed": len(err)})

    async def _upload(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        form = await request.post()
        file_id = f"file-in{next(self._ids)}"
        self.files[file_id] = {"purpose": form["purpose"], "filename": form["file"].filename,
                               "content": form["file"].file.read()}
        return web.json_response({"object": "file", "id": file_id, "purpose": form["purpose"]})

    async def _content(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        found = self.files.get(request.match_info["id"])
        if found is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.Response(body=found["content"], content_type="application/octet-stream")

    async def _delete(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        if self.fail_deletes > 0:
            self.fail_deletes -= 1
            return web.json_response({"error": {"message": "not now"}},
                                     status=self.delete_status)
        file_id = request.match_info["id"]
        found = self.files.pop(file_id, None)
        if found is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        self.gone[file_id] = found
        self.deleted.append(file_id)
        return web.json_response({"object": "file", "id": file_id, "deleted": True})

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        if self.refuse_batches:
            return web.json_response({"error": {"message": "batches are off"}}, status=400)
        body = await request.json()
        if body.get("input_file_id") not in self.files:
            return web.json_response({"error": {"message": "no such file"}}, status=400)
        batch_id = f"batch_up{next(self._ids)}"
        self.batches[batch_id] = {
            "object": "batch", "id": batch_id, "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
            "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": 1, "in_progress_at": None, "expires_at": 86401, "errors": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata")}
        return web.json_response(self.batches[batch_id])

    async def _retrieve(self, request: web.Request) -> web.Response:
        return web.json_response(self.batches[request.match_info["id"]])

    async def _cancel(self, request: web.Request) -> web.Response:
        batch = self.batches[request.match_info["id"]]
        batch.update(status="cancelling", cancelling_at=50)
        return web.json_response(batch)
