"""/v1/fine_tuning/jobs passed through to a provider that fine-tunes (OpenAI's API): create,
list, retrieve, cancel and events, in OpenAI's shapes (docs/files.md#fine-tuning).

How a job is routed: its ``model`` names a route (one the caller's key may use); the job goes
to the first target of that route, in config order, whose provider is of a type that offers
OpenAI's fine-tuning API, and the provider is asked to tune that target's model. The
``training_file`` (and ``validation_file``) is a gateway file of the caller (/v1/files): it is
uploaded to the provider first, streamed from its encrypted store, and the job is created with
the provider's file ids. The job is recorded in ``fine_tuning.db`` against the caller's key
(other keys get 404) under an id of the gateway's; answers carry the gateway's job and file
ids, never the provider's.

Once a job has ended (succeeded, failed, cancelled) the files the gateway uploaded for it are
deleted at the provider (unless ``fine_tuning.keep_provider_files``): the write that first
records it ended lists them (``provider_files``), and ``FineTuningFiles``, a background task,
deletes them (again later when the provider failed) and asks the jobs not ended yet for
their state every ``fine_tuning.poll``, so a job nobody looks at is cleaned up too. Under
``--workers N`` only worker 0 does this: the others would ask the provider the same, N times.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config.compiler import FINE_TUNING_TYPES
from ..errors import GatewayError
from ..graph.graph import KeySpec
from ..graph.graph import Route as GraphRoute
from ..graph.nodes import TargetNode
from ..hookspecs import KEY_SCOPE, Dispatch
from ..logs import get_logger
from ..middleware.state_backend import worker_index
from ..store import fine_tuning_db
from ..store.writer import Writer
from ..providers.base import Provider
from ..types import walk
from ..units import seconds
from .batch_usage import SpendAccounting
from .api import Endpoint, answers_errors, bounded_body, json_response, listing
from .native_base import forget
from .native_batches import native_provider
from .provider_api import call as _call
from .provider_api import delete, upload
from .store import FileStore, Owner

if TYPE_CHECKING:
    from ..middleware.limits import Limits

log = get_logger("gateway.fine_tuning")

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


@dataclass
class FineTuningSettings:
    poll: float = 60.0  # seconds between looks at the jobs not ended yet
    keep_provider_files: bool = False  # leave a job's uploaded files at the provider

    @classmethod
    def of(cls, section: Mapping[str, Any]) -> "FineTuningSettings":
        return cls(seconds(section.get("poll", "60s")),
                   bool(section.get("keep_provider_files", False)))


class JobStore:
    """``fine_tuning.db`` of a data directory, written by one thread (kept across reloads)."""

    def __init__(self, data_dir: str):
        file = fine_tuning_db.path(data_dir)
        self.writer = Writer(lambda: fine_tuning_db.connect(file), name=f"fine-tuning:{file}")
        self.settings = FineTuningSettings()  # of the config now serving

    async def save(self, row: Mapping[str, Any], job: dict[str, Any]) -> dict[str, Any]:
        """The provider's job into its row; the job in OpenAI's shape with the gateway's
        ids. The first time it is seen ended, the files to delete at the provider too."""
        shown = _mapped(job, row)
        status, text = str(shown.get("status", "")), orjson.dumps(shown).decode()
        remote = None
        if status in TERMINAL and row["status"] not in TERMINAL \
                and not self.settings.keep_provider_files:
            ids = [i for i in (row["provider_training_file"], row["provider_validation_file"])
                   if i]
            remote = orjson.dumps(ids).decode() if ids else None
        await self.writer.run(lambda c: fine_tuning_db.update(c, row["id"], status, text,
                                                              remote))
        return shown

    async def aclose(self) -> None:
        await self.writer.aclose()


class FineTuningEndpoints:
    def __init__(self, files: FileStore, jobs: JobStore, routes: Mapping[str, GraphRoute],
                 accounting: SpendAccounting | None = None, calls: "Limits | None" = None):
        self.files = files
        self.jobs = jobs
        self.db = jobs.writer
        self.routes = routes
        self.accounting = accounting  # the limits' spend check (builtin/fine_tuning.py)
        self.calls = calls  # every call counts against the caller's request limits

    def routes_(self) -> list[Route]:
        base = "/v1/fine_tuning/jobs"

        def served(endpoint: Endpoint) -> Endpoint:
            return answers_errors(endpoint, self.calls, base)
        return [Route(base, served(self.create), methods=["POST"]),
                Route(base, served(self.list), methods=["GET"]),
                Route(base + "/{job_id}", served(self.retrieve), methods=["GET"]),
                Route(base + "/{job_id}/cancel", served(self.cancel), methods=["POST"]),
                Route(base + "/{job_id}/events", served(self.events), methods=["GET"])]

    # -- endpoints -------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        body = await _json_body(request)
        key: KeySpec | None = request.scope.get(KEY_SCOPE)
        owner = Owner.of(key)
        route = body.get("model")
        if not isinstance(route, str) or not route:
            raise GatewayError(400, "'model' must name a route", code="invalid_value",
                               param="model")
        provider, model = self._target(route, key)
        if self.accounting is not None:  # the job's cost is unknown: only a spent budget
            await self.accounting.admit_batch(key, {route: 0.0}, what="no fine-tuning job is "
                                              "started while it is spent")
        records: dict[str, Mapping[str, Any]] = {}  # every file checked before any upload
        for field in ("training_file", "validation_file"):
            file_id = body.get(field)
            if file_id is None and field == "validation_file":
                continue
            if not isinstance(file_id, str):
                raise GatewayError(400, f"'{field}' must be the id of a file you uploaded "
                                   "(/v1/files)", code="invalid_value", param=field)
            record = await self.files.require(file_id, owner, param=field)
            if record["purpose"] != "fine-tune":
                raise GatewayError(400, f"{file_id} has purpose {record['purpose']!r}; "
                                   "upload the file with purpose 'fine-tune'",
                                   code="invalid_file", param=field)
            records[field] = record
        files = {field: (record["id"], await upload(provider, "fine-tune", record["filename"],
                                                    self.files.read(record)))
                 for field, record in records.items()}
        sent = {**body, "model": model, **{f: pid for f, (_, pid) in files.items()}}
        try:
            job = await _call(provider, "POST", "/fine_tuning/jobs", json=sent)
        except GatewayError:  # no job will use them
            if not self.jobs.settings.keep_provider_files:
                await forget(provider, [pid for _, pid in files.values()], _delete_file,
                             what="fine_tuning")
            raise
        provider_job = job.get("id")
        if not isinstance(provider_job, str):
            raise GatewayError(502, f"provider '{provider.name}' answered a job without an id",
                               type="server_error", code="bad_upstream")
        record = {
            "id": "ftjob-" + secrets.token_hex(12), "owner": owner.sha256,
            "owner_name": owner.name, "route": route, "provider": provider.name,
            "provider_job_id": provider_job,
            "training_file": files["training_file"][0],
            "validation_file": files.get("validation_file", (None, None))[0],
            "provider_training_file": files["training_file"][1],
            "provider_validation_file": files.get("validation_file", (None, None))[1],
            "created_at": int(time.time()), "status": "", "job": "",
        }
        shown = _mapped(job, record)
        record["status"], record["job"] = str(shown.get("status", "")), orjson.dumps(shown).decode()
        await self.db.run(lambda c: fine_tuning_db.insert(c, record))
        return json_response(shown)

    async def list(self, request: Request) -> Response:
        owner = Owner.of(request.scope.get(KEY_SCOPE))
        raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
        limit = int(raw) if raw.isdigit() else 0
        if not 1 <= limit <= MAX_LIMIT:
            raise GatewayError(400, f"'limit' must be an integer from 1 to {MAX_LIMIT}",
                               code="invalid_value", param="limit")
        after = request.query_params.get("after")
        rows = await self.db.run(lambda c: fine_tuning_db.page(c, owner.sha256, after, limit + 1))
        # Jobs still running are asked for their state; a provider that cannot answer (or a
        # provider gone from the config) leaves the job as last seen.
        jobs = await asyncio.gather(*(self._refresh(row, quiet=True) for row in rows[:limit]))
        return json_response(listing(list(jobs) + rows[limit:], limit))

    async def retrieve(self, request: Request) -> Response:
        return json_response(await self._refresh(await self._job(request)))

    async def cancel(self, request: Request) -> Response:
        row = await self._job(request)
        provider = self._provider(row)
        if provider is None:
            raise _provider_gone(row)
        job = await _call(provider, "POST", f"/fine_tuning/jobs/{row['provider_job_id']}/cancel")
        return json_response(await self._save(row, job))

    async def events(self, request: Request) -> Response:
        row = await self._job(request)
        provider = self._provider(row)
        if provider is None:
            raise _provider_gone(row)
        params = {k: v for k, v in request.query_params.items() if k in ("limit", "after")}
        answer = await _call(provider, "GET",
                             f"/fine_tuning/jobs/{row['provider_job_id']}/events", params=params)
        return json_response(answer)

    # -- helpers ---------------------------------------------------------------------------

    def _target(self, route: str, key: KeySpec | None) -> tuple[Provider, str]:
        """The provider and model that fine-tune for ``route``."""
        found = self.routes.get(route)
        if found is None or (key is not None and not key.allows(route)):
            if found is not None and key is not None:
                raise GatewayError(403, f"key '{key.name}' may not use route '{route}'",
                                   type="permission_error", code="route_not_allowed",
                                   param="model")
            raise GatewayError(404, f"The model '{route}' does not exist", code="model_not_found",
                               param="model")
        closed: Provider | None = None  # one that could, were it opened
        for node in walk(found.node):
            if isinstance(node, TargetNode) and isinstance(node.provider, Provider) \
                    and node.provider.spec.type in FINE_TUNING_TYPES:
                if node.provider.spec.options.get("fine_tuning"):
                    return node.provider, node.model
                closed = closed or node.provider
        if closed is not None:
            raise GatewayError(403, f"provider '{closed.name}' is not open to fine-tuning (jobs "
                               "run on its account at a cost the gateway does not count, and "
                               "training files go to it as they are, past every plugin): the "
                               f"operator sets providers.{closed.name}.fine_tuning: true to "
                               "open it", type="permission_error", code="fine_tuning_closed",
                               param="model")
        raise GatewayError(400, f"no target of route '{route}' can fine-tune: that needs a "
                           f"provider of type {' or '.join(sorted(FINE_TUNING_TYPES))}",
                           code="fine_tuning_unsupported", param="model")

    def _provider(self, row: Mapping[str, Any]) -> Provider | None:
        """The job's provider in the config now serving (None when it is gone)."""
        return native_provider(self.routes, row["provider"])

    async def _job(self, request: Request) -> dict[str, Any]:
        job_id = request.path_params["job_id"]
        owner = Owner.of(request.scope.get(KEY_SCOPE))
        row = await self.db.run(lambda c: fine_tuning_db.get(c, job_id, owner.sha256))
        if row is None:
            raise GatewayError(404, f"No such fine-tuning job: {job_id}",
                               code="fine_tuning_job_not_found", param="fine_tuning_job_id")
        return row

    async def _refresh(self, row: dict[str, Any], quiet: bool = False) -> dict[str, Any]:
        shown: dict[str, Any] = orjson.loads(row["job"])
        if row["status"] in TERMINAL:
            return shown
        provider = self._provider(row)
        if provider is None:
            return shown
        try:
            job = await _call(provider, "GET", f"/fine_tuning/jobs/{row['provider_job_id']}")
        except GatewayError:
            if quiet:
                return shown
            raise
        return await self._save(row, job)

    async def _save(self, row: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
        return await self.jobs.save(row, job)


class FineTuningFiles:
    """The background task that deletes, at the provider, the files uploaded for the jobs
    of one data directory once they have ended (see the module's doc)."""

    name = "fine_tuning:files"

    def __init__(self, jobs: JobStore,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.jobs = jobs
        self.sleep = sleep
        self.routes: Mapping[str, GraphRoute] = {}  # of the config now serving

    async def run(self, dispatch: Dispatch) -> None:
        if worker_index() != 0:  # worker 0 polls and deletes for the whole data directory
            return
        while True:
            await self.tick()
            await self.sleep(self.jobs.settings.poll)

    async def tick(self) -> None:
        rows = await self.jobs.writer.run(functools.partial(fine_tuning_db.unfinished,
                                                            ended=tuple(TERMINAL)))
        for row in rows:
            provider = native_provider(self.routes, row["provider"])
            if provider is None:  # gone from the config: tried again once it is back
                continue
            if row["status"] not in TERMINAL:
                try:
                    job = await _call(provider, "GET",
                                      f"/fine_tuning/jobs/{row['provider_job_id']}")
                except GatewayError as err:
                    log.warning("fine_tuning_poll_failed", job=row["id"], error=err.message)
                    continue
                await self.jobs.save(row, job)
                found = await self.jobs.writer.run(functools.partial(
                    fine_tuning_db.get, job_id=row["id"], owner=row["owner"]))
                row = found if found is not None else row
            if row.get("provider_files"):
                left = await forget(provider, orjson.loads(row["provider_files"]),
                                    _delete_file, what="fine_tuning")
                value = orjson.dumps(left).decode() if left else None
                await self.jobs.writer.run(functools.partial(
                    fine_tuning_db.set_provider_files, job_id=row["id"], provider_files=value))


async def _delete_file(provider: Provider, file_id: str) -> None:
    await delete(provider, f"/files/{file_id}")


def _mapped(job: dict[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """The provider's job with the gateway's ids: its own, and its files'."""
    shown = {**job, "id": row["id"], "training_file": row["training_file"]}
    if "validation_file" in job or row["validation_file"]:
        shown["validation_file"] = row["validation_file"]
    return shown


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await bounded_body(request))
    except orjson.JSONDecodeError:
        raise GatewayError(400, "the body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "the body must be a JSON object", code="invalid_json")
    return body


def _provider_gone(row: Mapping[str, Any]) -> GatewayError:
    return GatewayError(409, f"provider '{row['provider']}' of this job is no longer in the "
                        "config", code="provider_gone")
