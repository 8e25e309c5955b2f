"""A fake of OpenAI's files and fine-tuning API on a loopback port: POST /v1/files (multipart),
DELETE /v1/files/{id}, POST/GET /v1/fine_tuning/jobs, GET .../{id}, POST .../{id}/cancel,
GET .../{id}/events. It records what it got (uploaded contents included; ``deleted``: the
files deleted, in order; ``fail_deletes``: that many DELETEs answered 500 first) and checks
the bearer key."""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from .background_app import BackgroundApp

KEY = "sk-upstream-finetune-secret"


class FakeFineTuning(BackgroundApp):
    def __init__(self) -> None:
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.files: dict[str, dict[str, Any]] = {}  # id -> {purpose, filename, content}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []  # bodies of POST /fine_tuning/jobs
        self.fail_create: int | None = None  # answer POST /fine_tuning/jobs with this status
        self.deleted: list[str] = []
        self.fail_deletes = 0
        self.polls = 0  # GET /fine_tuning/jobs/{id}
        self._ids = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self._upload)
        app.router.add_delete("/v1/files/{id}", self._delete)
        app.router.add_post("/v1/fine_tuning/jobs", self._create)
        app.router.add_get("/v1/fine_tuning/jobs", self._list)
        app.router.add_get("/v1/fine_tuning/jobs/{id}", self._retrieve)
        app.router.add_post("/v1/fine_tuning/jobs/{id}/cancel", self._cancel)
        app.router.add_get("/v1/fine_tuning/jobs/{id}/events", self._events)

    def advance(self, job_id: str, status: str, **fields: Any) -> None:
        """Move a job on, as the provider's training would."""
        self.jobs[job_id].update(status=status, **fields)

    @web.middleware
    async def _auth(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": {"message": "bad key", "type": "auth"}}, status=401)
        return await handler(request)

    async def _start(self) -> None:
        app = web.Application(middlewares=[self._auth], client_max_size=self.client_max_size)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        file_id = f"file-up{next(self._ids)}"
        self.files[file_id] = {"purpose": form["purpose"], "filename": upload.filename,
                               "content": upload.file.read()}
        return web.json_response({"object": "file", "id": file_id, "purpose": form["purpose"],
                                  "filename": upload.filename, "bytes": 0, "created_at": 1,
                                  "status": "processed"})

    async def _delete(self, request: web.Request) -> web.Response:
        if self.fail_deletes:
            self.fail_deletes -= 1
            return web.json_response({"error": {"message": "try later"}}, status=500)
        file_id = request.match_info["id"]
        if self.files.pop(file_id, None) is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        self.deleted.append(file_id)
        return web.json_response({"object": "file", "id": file_id, "deleted": True})

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.created.append(body)
        if self.fail_create is not None:
            return web.json_response({"error": {"message": f"refused; key {KEY}",
                                                "type": "invalid_request_error"}},
                                     status=self.fail_create)
        if body.get("training_file") not in self.files:
            return web.json_response({"error": {"message": "no such training file"}}, status=400)
        job_id = f"ftjob-up{next(self._ids)}"
        self.jobs[job_id] = {
            "object": "fine_tuning.job", "id": job_id, "model": body["model"], "created_at": 1,
            "fine_tuned_model": None, "finished_at": None, "organization_id": "org-fake",
            "result_files": [], "status": "validating_files",
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "hyperparameters": body.get("hyperparameters") or {"n_epochs": "auto"},
            "trained_tokens": None, "error": None, "seed": 7, "suffix": body.get("suffix"),
        }
        return web.json_response(self.jobs[job_id])

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": list(self.jobs.values()),
                                  "has_more": False})

    def _job(self, request: web.Request) -> dict[str, Any]:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            raise web.HTTPNotFound(text='{"error": {"message": "no such job"}}',
                                   content_type="application/json")
        return job

    async def _retrieve(self, request: web.Request) -> web.Response:
        self.polls += 1
        return web.json_response(self._job(request))

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self._job(request)
        job["status"] = "cancelled"
        return web.json_response(job)

    async def _events(self, request: web.Request) -> web.Response:
        job = self._job(request)
        events = [{"object": "fine_tuning.job.event", "id": f"ftevent-{i}", "created_at": i,
                   "level": "info", "message": message, "data": {}, "type": "message"}
                  for i, message in enumerate(["Validating training file", f"Job {job['status']}"])]
        limit = int(request.query.get("limit", "20"))
        return web.json_response({"object": "list", "data": events[:limit],
                                  "has_more": len(events) > limit})
