"""Following a batch that a provider runs with its own batch API (native_batches.py): the
gateway batch's row kept in step with the provider's batch every ``batches.native_poll`` (a
client's cancel passed on), its results copied in once it ended, then its usage counted, then
its files at the provider deleted (unless ``batches.keep_provider_files``; the ones the
provider did not delete tried again by the runner's housekeeping).
docs/files.md#provider-native-batches.

Counted once: the write that marks the batch ended (its results in the gateway's files) also
sets ``accounted = 0``; its usage is then read from those files (not while they are copied:
a copy that fails midway is done again whole at the next poll) and counted (usage.db keeps
the batch id with its usage rows, in one transaction, so a batch is never charged twice),
its lines handed to the request log and /metrics (logs.db keeps each line once; a runner
hands a line at most once), then ``accounted = 1``. A batch left at 0 by a crash is listed
among the unfinished batches, so a runner takes it up again (files_db.unfinished_batches)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Mapping

import orjson

from ..errors import GatewayError
from ..hookspecs import Dispatch
from ..logs import get_logger
from ..providers.base import Provider
from ..store import files_db
from .batch_usage import UsageTap
from .native_base import ENDED
from .native_batches import native_provider
from .store import Owner

if TYPE_CHECKING:
    from .batches import BatchRunner

log = get_logger("gateway.batches")

ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/embeddings": "embeddings",
             "/v1/completions": "completions"}


def _native_values(conn: Any, batch_id: str, values: dict[str, Any]) -> None:
    """A provider batch's state into its row, except a cancel the client asked while the
    provider was being asked: the row stays cancelling (passed on at the next poll)."""
    row = files_db.get_batch(conn, batch_id)
    if row is not None and row["status"] == "cancelling" and values["status"] not in ENDED:
        values = {k: v for k, v in values.items() if k != "status"}
    files_db.update_batch(conn, batch_id, **values)


class NativeFollower:
    """What the batch runner does for the batches that providers run (one per runner)."""

    def __init__(self, runner: "BatchRunner"):
        self.runner = runner
        # batch -> its lines already handed to request_finished by an interrupted count
        self.handed: dict[str, int] = {}

    async def follow(self, dispatch: Dispatch, batch_id: str, owner: Owner) -> None:
        """A batch the provider runs: its state copied into the row every native_poll (a
        cancel passed on), until it ends and its files are copied in (their usage read on
        the way and counted once the row says the batch ended), then its files at the
        provider deleted (unless batches.keep_provider_files)."""
        runner = self.runner
        while True:
            row = await runner._row(batch_id)
            if row["status"] in ENDED:  # its results are in: its usage is still to count
                await self.account(dispatch, row, owner)
                return
            provider = native_provider(runner.routes, row["provider"])
            if provider is None:
                log.warning("batch_native_provider_gone", batch=batch_id, provider=row["provider"])
            else:
                try:
                    values = await runner.native.step(provider, row, owner)
                except GatewayError as err:  # the provider is down: ask again later
                    log.warning("batch_native_poll_failed", batch=batch_id, error=err.message)
                else:
                    remote = values.pop("provider_files", None) or []
                    if remote and not runner.settings.keep_provider_files:
                        values["provider_files"] = orjson.dumps(remote).decode()
                    if values["status"] in ENDED:
                        values["accounted"] = 0  # with the status: its usage is owed
                    await runner.store.writer.run(functools.partial(
                        _native_values, batch_id=batch_id, values=values))
                    if values["status"] in ENDED:
                        log.info("batch_finished", batch=batch_id, status=values["status"],
                                 provider=provider.name)
                        await self.account(dispatch, await runner._row(batch_id), owner)
                        if "provider_files" in values:
                            await self.forget(batch_id, provider, remote)
                        return
            await runner.sleep(runner.settings.native_poll)

    async def account(self, dispatch: Dispatch, row: Mapping[str, Any], owner: Owner) -> None:
        """Count the usage of an ended native batch from its output and error files (now
        the gateway's), once: see the module's doc."""
        batch_id, store = row["id"], self.runner.store
        tap = self._tap(dispatch, row, owner, self.handed.get(batch_id, 0))
        await tap.start()
        try:
            for column in ("output_file_id", "error_file_id"):
                record = await store.get(row[column], owner) if row.get(column) else None
                if row.get(column) and record is None:  # deleted by its owner meanwhile
                    log.warning("batch_usage_file_gone", batch=batch_id, file=row[column])
                if record is not None:
                    async for _, line in store.lines(record):
                        tap.line(line)
        finally:
            self.handed[batch_id] = max(self.handed.get(batch_id, 0), tap.lines)
        charged = await self._charge(dispatch, row, tap)
        await store.writer.run(functools.partial(files_db.mark_accounted, batch_id=batch_id))
        self.handed.pop(batch_id, None)
        log.info("batch_usage_counted", batch=batch_id, lines=tap.lines, charged=charged)

    def _tap(self, dispatch: Dispatch, row: Mapping[str, Any], owner: Owner,
             handed: int) -> UsageTap:
        """What reads a native batch's usage from its result files."""
        routes = orjson.loads(row["native_routes"]) if row.get("native_routes") else {}
        graph = dispatch.graph()
        store = self.runner.store

        async def route_of() -> dict[str, str]:  # custom_id -> route, when there are several
            found: dict[str, str] = {}
            record = await store.get(row["input_file_id"], owner)
            if len(routes) < 2 or record is None:
                return found
            async for _, line in store.lines(record):
                data = orjson.loads(line)
                found[str(data.get("custom_id"))] = str((data.get("body") or {}).get("model"))
            return found

        return UsageTap(row["id"], ENDPOINTS[row["endpoint"]], owner.name, routes, route_of,
                        self.runner.accounting, graph.request_finished, graph.version, handed)

    async def _charge(self, dispatch: Dispatch, row: Mapping[str, Any], tap: UsageTap) -> bool:
        """Count a native batch's usage for its key (usage rows, budgets, USD limits), once
        per batch: False when there was nothing to count or it was counted before."""
        accounting = self.runner.accounting
        if accounting is None or not tap.totals:
            return False
        try:
            key = self.runner._key(dispatch, row)
        except GatewayError:  # revoked meanwhile: its usage is still recorded, by name
            key = None
        return await accounting.charge_batch(key, row["owner_name"], tap.totals, row["id"])

    async def forget(self, batch_id: str, provider: Provider, remote: list[str]) -> None:
        """Delete a batch's files at the provider; the ones left are tried again later."""
        left = await self.runner.native.forget(provider, remote)
        await self.runner._update(batch_id, provider_files=orjson.dumps(left).decode() if left
                                  else None)

    async def forget_left(self) -> None:
        """Try again to delete the files at the provider of ended native batches (not of
        one this process still follows: it deletes them itself once its usage is counted)."""
        runner = self.runner
        for row in await runner.store.writer.run(files_db.provider_files_left):
            if row["id"] in runner.active:
                continue
            provider = native_provider(runner.routes, row["provider"])
            if provider is not None:
                await self.forget(row["id"], provider, orjson.loads(row["provider_files"]))
