"""/v1/batches run by the gateway itself (OpenAI's shapes): every line of the input file goes
through its route like a client request (the owning key's routes, limits and budget; the
route's retries and fallbacks), a bounded number at a time, by one background task per process
(hookspecs.background_task). Answers are recorded in files.db as they come (encrypted); when
every line is answered (or the batch is cancelled or expires) the output and error files are
written as gateway files.

Restarts: a batch is leased by one runner (renewed every second, ``LEASE`` long); a runner of
a process that died on this host is taken over at once, one elsewhere when its lease runs
out. The new runner skips every line already recorded, so no answered line is sent twice; a
line in flight when the process died (sent, its answer not recorded) is sent again.

A batch that a provider runs (``batch: native``) is created here and followed by
native_follow.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import GatewayError
from ..frontdoors.openai_shaped import OpenAIShapedDoor
from ..frontdoors.routes import internal_request
from ..graph.graph import KeySpec
from ..graph.graph import Route as GraphRoute
from ..graph.plugin_layer import plugins_see_traffic
from ..hookspecs import DISPATCH_SCOPE, KEY_SCOPE, Dispatch
from ..logs import get_logger
from ..middleware.limits_rules import estimate_completion_tokens, estimate_prompt_tokens
from ..store import files_db
from ..store.tasks import Supervisor
from ..units import seconds
from .api import Endpoint, answers_errors, bounded_body, json_response, listing, owner_of, page
from .batch_usage import SpendAccounting, line_request_id
from .jsonl import BATCH_URLS
from .native_batches import NativeBatches, native_target
from .native_follow import ENDPOINTS, NativeFollower
from .store import FileStore, Owner, not_found

if TYPE_CHECKING:
    from ..middleware.limits import Limits

log = get_logger("gateway.batches")

WINDOWS = {"24h": 24 * 3600}
LEASE = 15.0  # seconds a runner's claim on a batch lasts without renewal
TICK = 0.5  # seconds between looks at the batches table (a new batch wakes the runner at once)
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_BACKOFF = 30.0
CRASH_PAUSE = 60.0  # longest wait before a batch whose task failed is started again
FINISHED = ("completed", "failed", "expired", "cancelled")
SWEEP_EVERY = 3600.0  # seconds between sweeps of interrupted uploads (and one at start-up)


@dataclass
class BatchSettings:
    concurrency: int = 8
    max_attempts: int = 3
    native_poll: float = 30.0  # seconds between looks at a provider-native batch
    keep_provider_files: bool = False  # leave a native batch's files at the provider

    @classmethod
    def of(cls, section: Mapping[str, Any]) -> "BatchSettings":
        return cls(int(section.get("concurrency", 8)), int(section.get("max_attempts", 3)),
                   seconds(section.get("native_poll", "30s")),
                   bool(section.get("keep_provider_files", False)))


class BatchDoor(OpenAIShapedDoor):
    """A batch line: its body as it is, to the endpoint of its url."""

    name = "batch"

    def __init__(self, endpoint: str):
        self.endpoint = endpoint


def public_batch(row: Mapping[str, Any]) -> dict[str, Any]:
    """A batch in OpenAI's shape."""
    keys = ("id", "endpoint", "input_file_id", "completion_window", "status", "output_file_id",
            "error_file_id", "created_at", "in_progress_at", "expires_at", "finalizing_at",
            "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at")
    out: dict[str, Any] = {"object": "batch", **{k: row[k] for k in keys}}
    out["errors"] = orjson.loads(row["errors"]) if row["errors"] else None
    out["metadata"] = orjson.loads(row["metadata"]) if row["metadata"] else None
    out["request_counts"] = {"total": row["total"], "completed": row["completed"],
                             "failed": row["failed"]}
    return out


class BatchEndpoints:
    def __init__(self, store: FileStore, runner: "BatchRunner", calls: "Limits | None" = None):
        self.store = store
        self.runner = runner
        # Every call counts as one request against the caller's request limits; a batch's
        # lines count as requests when they run through the routes (not at create).
        self.calls = calls

    def routes(self) -> list[Route]:
        def served(endpoint: Endpoint) -> Endpoint:
            return answers_errors(endpoint, self.calls, "/v1/batches")
        return [Route("/v1/batches", served(self.create), methods=["POST"]),
                Route("/v1/batches", served(self.list), methods=["GET"]),
                Route("/v1/batches/{batch_id}", served(self.retrieve), methods=["GET"]),
                Route("/v1/batches/{batch_id}/cancel", served(self.cancel), methods=["POST"])]

    async def create(self, request: Request) -> Response:
        owner = owner_of(request)
        try:
            body = orjson.loads(await bounded_body(request))
        except orjson.JSONDecodeError as exc:
            raise GatewayError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise GatewayError(400, "the body must be a JSON object")
        endpoint = body.get("endpoint")
        if endpoint not in BATCH_URLS:
            raise GatewayError(400, f"'endpoint' must be one of {', '.join(BATCH_URLS)}",
                               code="invalid_value", param="endpoint")
        window = body.get("completion_window", "24h")
        if window not in WINDOWS:
            raise GatewayError(400, "'completion_window' must be \"24h\"", code="invalid_value",
                               param="completion_window")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16 or any(
                not isinstance(v, str) or len(k) > 64 or len(v) > 512
                for k, v in metadata.items())):
            raise GatewayError(400, "'metadata' must be an object of at most 16 string values",
                               code="invalid_value", param="metadata")
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str):
            raise GatewayError(400, "'input_file_id' must be the id of a file with purpose "
                               "batch", code="invalid_value", param="input_file_id")
        record = await self.store.require(file_id, owner, "input_file_id")
        if record["purpose"] != "batch":
            raise GatewayError(400, f"{file_id} has purpose {record['purpose']!r}: a batch "
                               "needs a file uploaded with purpose \"batch\"",
                               code="invalid_value", param="input_file_id")
        async for _, line in self.store.lines(record):  # every line has the same url
            url = orjson.loads(line).get("url")
            if url != endpoint:
                raise GatewayError(400, f"the lines of {file_id} are for {url}, not {endpoint}",
                                   code="invalid_value", param="endpoint")
            break
        now = int(time.time())
        row = {"id": "batch_" + secrets.token_hex(12), "owner": owner.sha256,
               "owner_name": owner.name, "endpoint": endpoint, "input_file_id": file_id,
               "completion_window": window, "status": "validating", "created_at": now,
               "expires_at": now + WINDOWS[window], "total": record["lines"] or 0,
               "completed": 0, "failed": 0,
               "metadata": orjson.dumps(metadata).decode() if metadata else None}
        # A provider-native batch goes to the provider as it is, past every plugin: not when
        # one reads requests or answers (pii-redact masking personal data, output-guard
        # checking answers); then the gateway runs it, each line through them.
        dispatch = request.scope.get(DISPATCH_SCOPE)
        if dispatch is None or not plugins_see_traffic(dispatch.graph().middleware):
            row.update(await self._native(record, endpoint, window, metadata,
                                          request.scope.get(KEY_SCOPE)))
        await self.store.writer.run(lambda c: files_db.insert_batch(c, row))
        log.info("batch_created", batch=row["id"], key=owner.name, lines=row["total"],
                 endpoint=endpoint)
        self.runner.wake()
        return json_response(public_batch(await self._get(row["id"], owner)))

    async def _native(self, record: Mapping[str, Any], endpoint: str, window: str,
                      metadata: Mapping[str, Any] | None,
                      key: KeySpec | None) -> dict[str, Any]:
        """When every route the lines name reaches one provider with ``batch: native``: the
        batch created there, as values of the row (docs/files.md#provider-native-batches);
        else nothing (the gateway runs it). Only routes the caller's key may use go native.
        Its estimated cost must fit the key's budgets (docs/files.md#usage-limits-and-budgets)."""
        tokens: dict[str, list[int]] = {}  # route -> [prompt, completion] estimates
        kind = ENDPOINTS[endpoint]
        async for _, line in self.store.lines(record):
            body = orjson.loads(line).get("body")
            model = body.get("model") if isinstance(body, dict) else None
            estimate = tokens.setdefault(model if isinstance(model, str) else "", [0, 0])
            if isinstance(body, dict):
                estimate[0] += estimate_prompt_tokens(body)
                estimate[1] += estimate_completion_tokens(body, kind)
        if key is not None and not all(key.allows(m) for m in tokens):
            return {}  # run here: each line the key may not send is refused with 403
        found = native_target(self.runner.routes, set(tokens))
        if found is None or not self.runner.native.takes(found[0], endpoint):
            return {}
        provider, targets = found
        labels = {route: f"{provider.name}/{model}" for route, model in targets.items()}
        accounting = self.runner.accounting
        if accounting is not None:
            await accounting.admit_batch(key, {route: accounting.batch_cost(labels[route], {
                "prompt_tokens": p, "completion_tokens": c}) for route, (p, c) in tokens.items()})
        batch = await self.runner.native.submit(provider, targets, record, endpoint, window,
                                                metadata)
        log.info("batch_native", provider=provider.name, provider_batch=batch["id"])
        values = self.runner.native.mapped(provider, batch)
        return {**values, "provider": provider.name, "provider_batch_id": batch["id"],
                "native_routes": orjson.dumps(labels).decode()}

    async def list(self, request: Request) -> Response:
        limit, after = page(request, default=20)
        owner = owner_of(request)
        rows = await self.store.writer.run(
            lambda c: files_db.list_batches(c, owner.sha256, after, limit + 1))
        return json_response(listing([public_batch(r) for r in rows], limit))

    async def retrieve(self, request: Request) -> Response:
        return json_response(public_batch(await self._get(request.path_params["batch_id"],
                                                          owner_of(request))))

    async def cancel(self, request: Request) -> Response:
        owner = owner_of(request)
        batch_id = request.path_params["batch_id"]
        row = await self._get(batch_id, owner)
        if row["status"] in FINISHED or row["status"] == "cancelling":
            if row["status"] != "cancelled" and row["status"] != "cancelling":
                raise GatewayError(409, f"batch {batch_id} is {row['status']}: it cannot be "
                                   "cancelled", code="batch_finished")
            return json_response(public_batch(row))
        now = int(time.time())
        await self.store.writer.run(lambda c: files_db.update_batch(
            c, batch_id, status="cancelling", cancelling_at=now))
        self.runner.wake()
        return json_response(public_batch(await self._get(batch_id, owner)))

    async def _get(self, batch_id: str, owner: Owner) -> dict[str, Any]:
        row = await self.store.writer.run(lambda c: files_db.get_batch(c, batch_id, owner.sha256))
        if row is None:
            raise not_found("Batch", batch_id, "batch_id")
        return row


def _runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _dead_here(runner: str | None) -> bool:
    """``runner`` was a process of this host that is gone."""
    if not runner:
        return False
    host, _, rest = runner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class BatchRunner:
    """The background task that runs the batches of one data directory (one per process)."""

    name = "batches"

    def __init__(self, store: FileStore, settings: BatchSettings | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.store = store
        self.settings = settings or BatchSettings()
        self.sleep = sleep
        self.id = _runner_id()
        self.active: dict[str, asyncio.Task[None]] = {}
        self._paused: dict[str, tuple[int, float]] = {}  # batch -> (failures, resume at)
        self._wake = asyncio.Event()
        self._slots: asyncio.Semaphore | None = None
        self._slots_size = 0
        self._pending: list[tuple[str, int, bool, bytes, asyncio.Future[None]]] = []
        self.native = NativeBatches(store)
        self.follower = NativeFollower(self)
        self.routes: Mapping[str, GraphRoute] = {}  # of the config now serving
        # Counts what provider-native batches cost (the built-in limits; None: not counted).
        self.accounting: SpendAccounting | None = None
        self._flushing = False

    def configure(self, settings: BatchSettings) -> None:
        self.settings = settings

    def wake(self) -> None:
        self._wake.set()

    def slots(self) -> asyncio.Semaphore:
        if self._slots is None or self._slots_size != self.settings.concurrency:
            # A new limit applies to lines started from now on.
            self._slots = asyncio.Semaphore(self.settings.concurrency)
            self._slots_size = self.settings.concurrency
        return self._slots

    async def run(self, dispatch: Dispatch) -> None:
        chores = Supervisor("batches:housekeeping", self._housekeeping, sleep=self.sleep)
        chores.start()
        try:
            while True:
                await self._tick(dispatch)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), TICK)
                self._wake.clear()
        finally:
            await chores.stop()
            tasks = list(self.active.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.active.clear()

    async def _tick(self, dispatch: Dispatch) -> None:
        rows = await self.store.writer.run(files_db.unfinished_batches)
        now = time.time()
        for row in rows:
            batch_id = row["id"]
            dead = [row["runner"]] if _dead_here(row["runner"]) else []
            ours = await self.store.writer.run(
                functools.partial(files_db.claim_batch, batch_id=batch_id, runner=self.id,
                                  now=now, lease=LEASE, dead=dead))
            paused = self._paused.get(batch_id)
            if paused is not None and time.monotonic() < paused[1]:
                continue  # it failed lately: started again after its pause (_ended)
            if ours and batch_id not in self.active:
                if dead:
                    log.info("batch_resumed", batch=batch_id, previous_runner=dead[0])
                task = asyncio.get_running_loop().create_task(
                    self._run_batch(dispatch, batch_id), name=f"batch:{batch_id}")
                self.active[batch_id] = task
                task.add_done_callback(functools.partial(self._ended, batch_id))

    def _ended(self, batch_id: str, task: asyncio.Task[None]) -> None:
        self.active.pop(batch_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Each start resends the lines that were in flight: after a failure (a full disk,
            # a locked files.db) the batch waits 1 s, 2 s, 4 s ... up to CRASH_PAUSE.
            failures = self._paused.get(batch_id, (0, 0.0))[0] + 1
            pause = min(2.0 ** (failures - 1), CRASH_PAUSE)
            self._paused[batch_id] = (failures, time.monotonic() + pause)
            log.error("batch_crashed", batch=batch_id, error=f"{type(exc).__name__}: {exc}",
                      failures=failures, retry_in=pause)
        else:
            self._paused.pop(batch_id, None)

    async def _row(self, batch_id: str) -> dict[str, Any]:
        row = await self.store.writer.run(lambda c: files_db.get_batch(c, batch_id))
        assert row is not None
        return row

    async def _update(self, batch_id: str, **values: Any) -> None:
        await self.store.writer.run(lambda c: files_db.update_batch(c, batch_id, **values))

    async def _run_batch(self, dispatch: Dispatch, batch_id: str) -> None:
        row = await self._row(batch_id)
        owner = Owner(row["owner"], row["owner_name"])
        if row.get("provider_batch_id"):
            await self.follower.follow(dispatch, batch_id, owner)
            return
        if row["status"] == "validating":
            await self._update(batch_id, status="in_progress", in_progress_at=int(time.time()))
            row["status"] = "in_progress"
        if row["status"] == "in_progress":
            ending = await self._send_lines(dispatch, row, owner)
        elif row["status"] == "cancelling":
            ending = "cancelling"
        else:  # finalizing when the process stopped: the lines are over
            ending = await self._stop_reason(batch_id)
        await self._finish(row, owner, ending)

    async def _housekeeping(self) -> None:
        """Runs beside the batches (supervised): interrupted uploads swept at start-up and
        every SWEEP_EVERY; native batches' provider files not deleted yet tried again every
        native_poll."""
        swept = -math.inf
        while True:
            if time.monotonic() - swept >= SWEEP_EVERY:
                await self.store.sweep()
                swept = time.monotonic()
            await self.follower.forget_left()
            await self.sleep(self.settings.native_poll)

    async def _send_lines(self, dispatch: Dispatch, row: dict[str, Any], owner: Owner) -> str:
        """Send every line not answered yet; the status the batch ends with: finalizing (all
        answered), cancelling or expired (stopped early), failed (no input)."""
        batch_id = row["id"]
        done = await self.store.writer.run(lambda c: files_db.done_lines(c, batch_id))
        record = await self.store.get(row["input_file_id"], owner)
        if record is None:
            await self._update(batch_id, errors=orjson.dumps({"object": "list", "data": [{
                "code": "input_file_missing", "message": f"the input file "
                f"{row['input_file_id']} was deleted", "param": "input_file_id",
                "line": None}]}).decode())
            return "failed"
        door = BatchDoor(ENDPOINTS[row["endpoint"]])
        running: set[asyncio.Task[None]] = set()
        checked, ending = time.monotonic(), "finalizing"
        try:
            async for number, line in self.store.lines(record):
                if number in done:
                    continue
                if time.monotonic() - checked > TICK:
                    checked = time.monotonic()
                    ending = await self._stop_reason(batch_id)
                    if ending != "finalizing":
                        break
                slots = self.slots()
                await slots.acquire()
                task = asyncio.get_running_loop().create_task(
                    self._line(dispatch, door, row, number, line, slots))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()
        if ending == "finalizing":
            ending = await self._stop_reason(batch_id)
        return ending

    async def _stop_reason(self, batch_id: str) -> str:
        row = await self._row(batch_id)
        if row["status"] == "cancelling":
            return "cancelling"
        if time.time() >= row["expires_at"]:
            return "expired"
        return "finalizing"

    async def _line(self, dispatch: Dispatch, door: BatchDoor, row: dict[str, Any],
                    number: int, line: bytes, slots: asyncio.Semaphore) -> None:
        try:
            request = orjson.loads(line)
            custom_id = request["custom_id"]
            try:
                status, request_id, answer = await self._send(dispatch, door, row, request)
            except Exception as exc:  # one line's bug must not stop the batch
                # Raised out of the batch task, it was retried every tick for ever, resending
                # the lines in flight each time: the line fails instead, the batch goes on.
                log.error("batch_line_failed", batch=row["id"], line=number,
                          error=f"{type(exc).__name__}: {exc}")
                status, request_id, answer = 500, "", {"error": {
                    "message": "the gateway failed on this line (see its log: "
                    "batch_line_failed)", "code": "gateway_error"}}
            ok = 200 <= status < 300
            result: dict[str, Any] = {
                "id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id,
                "response": {"status_code": status, "request_id": request_id, "body": answer},
                "error": None}
            if not ok:
                error = answer.get("error") if isinstance(answer, dict) else None
                error = error if isinstance(error, dict) else {}
                result["error"] = {"code": error.get("code") or str(status),
                                   "message": error.get("message") or f"status {status}"}
            await self._record(row["id"], number, ok, orjson.dumps(result))
        finally:
            slots.release()

    async def _send(self, dispatch: Dispatch, door: BatchDoor, row: dict[str, Any],
                    request: dict[str, Any]) -> tuple[int, str, Any]:
        """The line through its route as the batch's key: (status, request id, answer),
        again on 429/5xx up to max_attempts (waiting Retry-After, or a backoff)."""
        body = orjson.dumps(request["body"])
        attempt = 0
        while True:
            attempt += 1
            try:
                key = self._key(dispatch, row)
            except GatewayError as err:
                return err.status, "", {"error": {"message": err.message, "type": err.type,
                                                  "code": err.code, "param": None}}
            headers = {"x-request-id": line_request_id(row["id"], request["custom_id"])}
            answer = await dispatch(internal_request(row["endpoint"], body, key, headers), door)
            try:
                parsed = orjson.loads(answer.body)
            except orjson.JSONDecodeError:
                parsed = {"error": {"message": bytes(answer.body).decode("utf-8", "replace"),
                                    "code": None}}
            status = answer.status_code
            if status not in RETRY_STATUSES or attempt >= self.settings.max_attempts:
                return status, answer.headers.get("x-request-id", ""), parsed
            wait = min(0.25 * 2 ** (attempt - 1), MAX_BACKOFF)
            retry_after = answer.headers.get("retry-after", "")
            with contextlib.suppress(ValueError):
                wait = min(max(float(retry_after), 0.0), MAX_BACKOFF) if retry_after else wait
            await self.sleep(wait)

    @staticmethod
    def _key(dispatch: Dispatch, row: Mapping[str, Any]) -> KeySpec | None:
        """The batch's key as it is now (revoked or expired: 401 for its remaining lines)."""
        graph = dispatch.graph()
        if not row["owner"]:
            if graph.requires_key:
                raise GatewayError(401, "this batch was created when the gateway needed no key; "
                                   "it needs one now", type="authentication_error",
                                   code="missing_api_key")
            return None
        by_hash = getattr(graph.authenticator, "by_hash", None)
        if by_hash is None or row["owner"].startswith("name:"):
            raise GatewayError(401, f"the key {row['owner_name']!r} of this batch cannot be "
                               "looked up (a plugin authenticator that keeps no hashes)",
                               type="authentication_error", code="invalid_api_key")
        key: KeySpec = by_hash(row["owner"])
        return key

    async def _record(self, batch_id: str, number: int, ok: bool, result: bytes) -> None:
        """Keep a line's answer (encrypted), in a transaction shared with the answers that
        arrive meanwhile; returns once it is committed."""
        blob = self.store.seal(batch_id, result)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((batch_id, number, ok, blob, done))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await done

    async def _flush(self) -> None:
        try:
            while self._pending:
                taken, self._pending = self._pending, []

                def save(conn: Any, taken: list = taken) -> None:
                    by_batch: dict[str, list[tuple[int, bool, bytes]]] = {}
                    for batch_id, number, ok, blob, _ in taken:
                        by_batch.setdefault(batch_id, []).append((number, ok, blob))
                    for batch_id, results in by_batch.items():
                        files_db.save_results(conn, batch_id, results)

                try:
                    await self.store.writer.run(save)
                except Exception as exc:  # every waiter gets the error (their line is redone)
                    for *_, done in taken:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for *_, done in taken:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._flushing = False

    async def _finish(self, row: dict[str, Any], owner: Owner, ending: str) -> None:
        """Write the output and error files and set the final status."""
        batch_id = row["id"]
        now = int(time.time())
        if ending == "failed":
            await self._update(batch_id, status="failed", failed_at=now)
            log.info("batch_failed", batch=batch_id)
            return
        final = {"finalizing": "completed", "cancelling": "cancelled",
                 "expired": "expired"}[ending]
        # Until the files are written the batch stays unfinished (cancelling, or finalizing),
        # so a runner after a restart finishes the job.
        await self._update(batch_id, status="cancelling" if ending == "cancelling"
                           else "finalizing", finalizing_at=now)
        if ending == "expired":
            await self._expire_rest(row, owner)
        ids: dict[str, str | None] = {}
        for ok, column in ((True, "output_file_id"), (False, "error_file_id")):
            rows = await self.store.writer.run(
                functools.partial(files_db.results, batch_id=batch_id, ok=ok))
            if not rows:
                ids[column] = None
                continue
            upload = self.store.begin(owner, f"{batch_id}_{'output' if ok else 'error'}.jsonl",
                                      "batch_output")
            try:
                for _, blob in rows:
                    upload.write(self.store.unseal(batch_id, blob) + b"\n")
            except BaseException:
                upload.abort()
                raise
            ids[column] = (await upload.commit())["id"]
        stamp = {"completed": "completed_at", "cancelled": "cancelled_at",
                 "expired": "expired_at"}[final]
        await self._update(batch_id, status=final, **ids, **{stamp: int(time.time())})
        # The answers are in the files now (a crash before this leaves rows nobody reads).
        await self.store.writer.run(functools.partial(files_db.drop_results, batch_id=batch_id))
        latest = await self._row(batch_id)
        log.info("batch_" + final, batch=batch_id, completed=latest["completed"],
                 failed=latest["failed"])

    async def _expire_rest(self, row: dict[str, Any], owner: Owner) -> None:
        """An expired batch: each line never answered gets an error line (batch_expired)."""
        batch_id = row["id"]
        done = await self.store.writer.run(lambda c: files_db.done_lines(c, batch_id))
        record = await self.store.get(row["input_file_id"], owner)
        if record is None:
            return
        results = []
        async for number, line in self.store.lines(record):
            if number in done:
                continue
            custom_id = orjson.loads(line).get("custom_id")
            error = {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id,
                     "response": None, "error": {"code": "batch_expired", "message":
                                                 "This request could not be executed before "
                                                 "the completion window expired."}}
            results.append((number, False, self.store.seal(batch_id, orjson.dumps(error))))
        await self.store.writer.run(lambda c: files_db.save_results(c, batch_id, results))
