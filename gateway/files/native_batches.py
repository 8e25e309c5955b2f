"""Provider-native batches: a batch whose lines all go to a provider configured with
``batch: native`` is handed to that provider's own batch API whole instead of being run line
by line by the gateway (docs/files.md#provider-native-batches).

- ``native_target(routes, models)``: which provider, if any, takes a batch whose lines name
  these routes: every route's first target (config order) with a ``batch: native`` provider,
  all of them the same provider. Each line's ``body.model`` (a route) becomes that target's
  model.
- ``NativeBatches``: the adapter of each provider type (``NativeBatchAPI``, native_base.py):
  ``OpenAIBatches`` here (openai, openai-compatible: /files + /batches) and
  ``AnthropicBatches`` (native_anthropic.py: Message Batches), ``BedrockBatches``
  (native_bedrock.py: batch inference jobs, S3); ``submit`` / ``refresh`` /
  ``cancel`` / ``mapped`` / ``collect`` go to the provider's adapter.
- ``step``: one poll of the provider batch a gateway batch follows (cancelling it there when
  the client cancelled): the values to write into the gateway's batch row (once it ended:
  its results copied in, and ``provider_files``: what to delete at the provider,
  ``forget``). native_follow.py reads its usage from the copies.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Mapping

import time

import orjson

from ..errors import GatewayError
from ..graph.graph import Route
from ..graph.nodes import TargetNode
from ..providers.base import Provider
from ..types import walk
from .native_anthropic import AnthropicBatches
from .native_bedrock import BedrockBatches
from .native_base import ENDED, STATUSES, BatchFailed, NativeBatchAPI
from .provider_api import call, delete, stream, upload
from .store import FileStore, Owner

NATIVE = "native"
# The timestamps of OpenAI's batch object that the gateway's batch row keeps.
TIMES = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
         "cancelling_at", "cancelled_at", "expires_at")


def native_target(routes: Mapping[str, Route],
                  models: set[str]) -> tuple[Provider, dict[str, str]] | None:
    """The provider that takes a batch whose lines name ``models`` (routes), and each route's
    model there; None when the batch runs in the gateway (some route has no ``batch: native``
    target, or they reach different providers)."""
    provider: Provider | None = None
    mapping: dict[str, str] = {}
    for name in models:
        route = routes.get(name)
        if route is None:
            return None
        target = next((n for n in walk(route.node) if isinstance(n, TargetNode)
                       and isinstance(n.provider, Provider)
                       and n.provider.spec.options.get("batch") == NATIVE), None)
        if target is None or not isinstance(target.provider, Provider):
            return None
        if provider is not None and target.provider is not provider:
            return None
        provider, mapping[name] = target.provider, target.model
    return None if provider is None else (provider, mapping)


def native_provider(routes: Mapping[str, Route], name: str) -> Provider | None:
    """The provider ``name`` as the config now serving has it (None when it is gone)."""
    for route in routes.values():
        for node in walk(route.node):
            if isinstance(node, TargetNode) and isinstance(node.provider, Provider) \
                    and node.provider.name == name:
                return node.provider
    return None


class OpenAIBatches(NativeBatchAPI):
    """OpenAI's Batch API: the input uploaded to ``/files`` (purpose ``batch``), ``POST
    /batches``; the output and error files copied back as they are."""

    async def submit(self, provider: Provider, models: Mapping[str, str],
                     record: Mapping[str, Any], endpoint: str, completion_window: str,
                     metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Upload the input file (each line's model the target's) and create the batch."""
        file_id = await upload(provider, "batch", record["filename"],
                               self._rewritten(record, models))
        body: dict[str, Any] = {"input_file_id": file_id, "endpoint": endpoint,
                                "completion_window": completion_window}
        if metadata:
            body["metadata"] = dict(metadata)
        try:
            batch = await call(provider, "POST", "/batches", json=body)
        except GatewayError:
            await self.forget(provider, [file_id])  # no batch will use it
            raise
        if not isinstance(batch.get("id"), str):
            raise GatewayError(502, f"provider '{provider.name}' answered a batch without an id",
                               type="server_error", code="bad_upstream")
        return batch

    async def refresh(self, provider: Provider, batch_id: str) -> dict[str, Any]:
        return await call(provider, "GET", f"/batches/{batch_id}")

    async def cancel(self, provider: Provider, batch_id: str) -> dict[str, Any]:
        return await call(provider, "POST", f"/batches/{batch_id}/cancel")

    def mapped(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return mapped(batch)

    def provider_files(self, batch: Mapping[str, Any]) -> list[str]:
        """The batch's input, output and error files at the provider."""
        ids = (batch.get(f) for f in ("input_file_id", "output_file_id", "error_file_id"))
        return [i for i in ids if isinstance(i, str) and i]

    async def delete_file(self, provider: Provider, file_id: str) -> None:
        await delete(provider, f"/files/{file_id}")

    async def collect(self, provider: Provider, batch: Mapping[str, Any], owner: Owner,
                      record: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The provider's output and error files as gateway files of ``owner``:
        ``{"output_file_id": ..., "error_file_id": ...}`` (None where the provider has none)."""
        ids: dict[str, str | None] = {}
        for field, name in (("output_file_id", "output"), ("error_file_id", "errors")):
            remote = batch.get(field)
            if not isinstance(remote, str) or not remote:
                ids[field] = None
                continue
            upload = self.store.begin(owner, f"{batch['id']}_{name}.jsonl", "batch_output")
            try:
                async for chunk in stream(provider, f"/files/{remote}/content"):
                    upload.write(chunk)
                ids[field] = (await upload.commit())["id"]
            except BaseException:
                upload.abort()
                raise
        return ids

    async def _rewritten(self, record: Mapping[str, Any],
                         models: Mapping[str, str]) -> AsyncIterator[bytes]:
        async for _, line in self.store.lines(record):
            data = orjson.loads(line)
            body = data.get("body") if isinstance(data, dict) else None
            if isinstance(body, dict) and body.get("model") in models:
                data = {**data, "body": {**body, "model": models[body["model"]]}}
            yield orjson.dumps(data) + b"\n"


class NativeBatches:
    """The batch API adapter of each provider type that has one."""

    def __init__(self, store: FileStore):
        self.store = store
        openai = OpenAIBatches(store)
        self.apis: dict[str, NativeBatchAPI] = {
            "openai": openai, "openai-compatible": openai, "anthropic": AnthropicBatches(store),
            "bedrock": BedrockBatches(store)}

    def api(self, provider: Provider) -> NativeBatchAPI:
        found = self.apis.get(provider.spec.type)
        if found is None:
            raise GatewayError(400, f"provider '{provider.name}' ({provider.spec.type}) has no "
                               "batch API the gateway can use", code="native_batch_unsupported")
        return found

    def takes(self, provider: Provider, endpoint: str) -> bool:
        """Whether ``provider``'s batch API runs batches of ``endpoint``."""
        found = self.apis.get(provider.spec.type)
        return found is not None and endpoint in found.endpoints

    async def submit(self, provider: Provider, models: Mapping[str, str],
                     record: Mapping[str, Any], endpoint: str, completion_window: str,
                     metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.api(provider).submit(provider, models, record, endpoint,
                                               completion_window, metadata)

    async def refresh(self, provider: Provider, batch_id: str) -> dict[str, Any]:
        return await self.api(provider).refresh(provider, batch_id)

    async def cancel(self, provider: Provider, batch_id: str) -> dict[str, Any]:
        return await self.api(provider).cancel(provider, batch_id)

    def mapped(self, provider: Provider, batch: Mapping[str, Any]) -> dict[str, Any]:
        return self.api(provider).mapped(batch)

    async def collect(self, provider: Provider, batch: Mapping[str, Any], owner: Owner,
                      record: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.api(provider).collect(provider, batch, owner, record)

    async def forget(self, provider: Provider, file_ids: list[str]) -> list[str]:
        """Delete a batch's ``provider_files`` at the provider: the ones left (logged)."""
        return await self.api(provider).forget(provider, file_ids)

    async def step(self, provider: Provider, row: Mapping[str, Any],
                   owner: Owner) -> dict[str, Any]:
        """One look at a provider batch that a gateway batch row (``provider_batch_id``)
        follows: the values to write into the row. A row the client cancelled is cancelled
        at the provider first; a batch that ended has its files copied in
        (``output_file_id`` and ``error_file_id`` are then gateway ids) and
        ``provider_files`` lists what it keeps at the provider."""
        batch_id = row["provider_batch_id"]
        batch = await self.refresh(provider, batch_id)
        if row["status"] == "cancelling" and \
                self.mapped(provider, batch)["status"] not in ("cancelling", *ENDED):
            # asked once: a provider may refuse to cancel a batch cancelling or ended
            batch = await self.cancel(provider, batch_id)
        values = self.mapped(provider, batch)
        if values["status"] in ENDED:
            record = None
            if row.get("input_file_id"):
                record = await self.store.get(row["input_file_id"], owner)
            try:
                values.update(await self.collect(provider, batch, owner, record))
            except BatchFailed as err:
                error = {"code": err.code, "message": err.message, "param": None, "line": None}
                values.update(status="failed", failed_at=int(time.time()),
                              errors=orjson.dumps({"object": "list", "data": [error]}).decode())
            values["provider_files"] = self.api(provider).provider_files(batch)
        return values


def mapped(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The provider's batch as values of the gateway's batch row: status, counts (total,
    completed, failed), timestamps and errors."""
    status = batch.get("status")
    values: dict[str, Any] = {"status": status if status in STATUSES else "in_progress"}
    counts = batch.get("request_counts")
    if isinstance(counts, dict):
        for field in ("total", "completed", "failed"):
            if isinstance(counts.get(field), int):
                values[field] = counts[field]
    for field in TIMES:
        if isinstance(batch.get(field), int):
            values[field] = batch[field]
    if batch.get("errors"):
        values["errors"] = orjson.dumps(batch["errors"]).decode()
    return values
