"""Anthropic's Message Batches behind the gateway's /v1/batches (providers of type anthropic
with ``batch: native``; docs/files.md#provider-native-batches).

- ``submit``: every line's chat-completions body translated to a Messages body (the same
  translation as live requests, the model the route's target's) and sent as
  ``POST /v1/messages/batches {"requests": [{"custom_id", "params"}]}``, streamed with its
  length known from a first pass that checks every line and Anthropic's limits
  (``MAX_REQUESTS`` requests, ``MAX_BYTES``) before anything is sent. A custom_id Anthropic
  would refuse goes as ``SAFE_PREFIX`` and its line number (``anthropic_id``), mapped back in
  the results, so any batch file OpenAI takes runs.
- ``refresh`` / ``cancel``: ``GET /v1/messages/batches/{id}``, ``POST .../cancel``;
  ``mapped``: ``processing_status`` and ``request_counts`` as OpenAI's batch status and counts.
- ``collect``: the JSONL at the batch's ``results_url`` (only on the provider's configured
  host: its key goes nowhere else), read line by line; each succeeded message translated to a
  chat.completion, written to the output file, the other results to the error file, in
  OpenAI's batch output format.
"""

from __future__ import annotations

import re
from typing import Any, AsyncIterator, Mapping

import orjson

from ..errors import GatewayError
from ..providers.anthropic_response import ERROR_STATUS, error_code, from_anthropic
from ..providers.anthropic_translate import DEFAULT_MAX_TOKENS, to_anthropic
from ..providers.base import Provider
from ..providers.http import error_type
from ..providers.native import TranslationError
from .native_base import (
    ENDED, BatchFailed, NativeBatchAPI, ResultFiles, jsonl_lines, output_line, unix_time,
)
from .provider_api import ForeignHost, call, delete, stream_url
from .store import Owner

MAX_REQUESTS = 100_000  # Anthropic's limits on one Message Batch
MAX_BYTES = 256_000_000
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # what Anthropic takes as a custom_id
SAFE_PREFIX = "gw-line-"
HEAD, TAIL = b'{"requests":[', b"]}"
STATUSES = {"in_progress": "in_progress", "canceling": "cancelling"}
NOT_RUN = {
    "canceled": ("batch_cancelled", "The batch was cancelled before this request was run."),
    "expired": ("batch_expired", "This request could not be executed before the completion "
                "window expired."),
}


def _path(provider: Provider) -> str:
    """Message Batches under the provider's base_url (with or without its /v1)."""
    base = provider.spec.base_url.rstrip("/")
    return "/messages/batches" if base.endswith("/v1") else "/v1/messages/batches"



def anthropic_id(number: int, custom_id: str) -> str:
    """The custom_id line ``number`` goes to Anthropic with: its own when Anthropic takes it,
    else ``SAFE_PREFIX`` and the line number (also for an own one starting with SAFE_PREFIX,
    so two lines never get the same)."""
    if CUSTOM_ID.fullmatch(custom_id) and not custom_id.startswith(SAFE_PREFIX):
        return custom_id
    return f"{SAFE_PREFIX}{number}"


def _refused(number: int, message: str) -> GatewayError:
    return GatewayError(400, f"line {number}: {message}", code="invalid_value",
                        param="input_file_id")


class AnthropicBatches(NativeBatchAPI):
    endpoints = frozenset({"/v1/chat/completions"})

    async def submit(self, provider: Provider, models: Mapping[str, str],
                     record: Mapping[str, Any], endpoint: str, completion_window: str,
                     metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every line checked and measured first (nothing is sent for a batch Anthropic
        would refuse), then the requests streamed to POST /v1/messages/batches."""
        count, size = 0, len(HEAD) + len(TAIL)
        async for request in self._requests(provider, models, record):
            count += 1
            size += len(request) + (count > 1)
            if count > MAX_REQUESTS:
                raise GatewayError(400, f"Anthropic's Message Batches take at most "
                                   f"{MAX_REQUESTS} requests: this file has more",
                                   code="batch_too_large", param="input_file_id")
            if size > MAX_BYTES:
                raise GatewayError(400, f"Anthropic's Message Batches take at most "
                                   f"{MAX_BYTES} bytes of requests: this file's requests "
                                   f"are over that at line {count}", code="batch_too_large",
                                   param="input_file_id")
        batch = await call(provider, "POST", _path(provider),
                           data=self._body(provider, models, record),
                           headers={"Content-Type": "application/json",
                                    "Content-Length": str(size)})
        if not isinstance(batch.get("id"), str):
            raise GatewayError(502, f"provider '{provider.name}' answered a batch without an id",
                               type="server_error", code="bad_upstream")
        return batch

    async def _requests(self, provider: Provider, models: Mapping[str, str],
                        record: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """Each line as one ``{"custom_id", "params"}`` of the batch, encoded."""
        max_tokens = int(provider.spec.options.get("default_max_tokens") or DEFAULT_MAX_TOKENS)
        async for number, line in self.store.lines(record):
            data = orjson.loads(line)
            custom_id, body = anthropic_id(number, str(data["custom_id"])), data["body"]
            try:
                params = to_anthropic({**body, "model": models[body["model"]]},
                                      default_max_tokens=max_tokens).body
            except TranslationError as err:
                raise _refused(number, f"anthropic: {err.message}") from None
            yield orjson.dumps({"custom_id": custom_id, "params": params})

    async def _body(self, provider: Provider, models: Mapping[str, str],
                    record: Mapping[str, Any]) -> AsyncIterator[bytes]:
        yield HEAD
        first = True
        async for request in self._requests(provider, models, record):
            yield request if first else b"," + request
            first = False
        yield TAIL

    async def refresh(self, provider: Provider, batch_id: str) -> dict[str, Any]:
        return await call(provider, "GET", f"{_path(provider)}/{batch_id}")

    async def cancel(self, provider: Provider, batch_id: str) -> dict[str, Any]:
        return await call(provider, "POST", f"{_path(provider)}/{batch_id}/cancel")

    def provider_files(self, batch: Mapping[str, Any]) -> list[str]:
        """The batch itself: Anthropic keeps its requests and results until it is deleted."""
        return [str(batch["id"])]

    async def delete_file(self, provider: Provider, file_id: str) -> None:
        await delete(provider, f"{_path(provider)}/{file_id}")

    def mapped(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """ended is completed, cancelled (a cancel was asked) or expired (requests expired);
        succeeded lines count as completed, errored, cancelled and expired ones as failed."""
        raw = batch.get("request_counts")
        raw = raw if isinstance(raw, dict) else {}
        counts = {k: v if isinstance(v := raw.get(k), int) else 0
                  for k in ("processing", "succeeded", "errored", "canceled", "expired")}
        cancelled_at = unix_time(batch.get("cancel_initiated_at"))
        status = STATUSES.get(str(batch.get("processing_status")), "in_progress")
        if batch.get("processing_status") == "ended":
            status = "cancelled" if cancelled_at is not None else \
                "expired" if counts["expired"] else "completed"
        values: dict[str, Any] = {
            "status": status, "total": sum(counts.values()), "completed": counts["succeeded"],
            "failed": counts["errored"] + counts["canceled"] + counts["expired"]}
        times = {"in_progress_at": unix_time(batch.get("created_at")),
                 "expires_at": unix_time(batch.get("expires_at")), "cancelling_at": cancelled_at}
        if status in ENDED:
            times[f"{status}_at"] = unix_time(batch.get("ended_at"))
        values.update((k, v) for k, v in times.items() if v is not None)
        return values

    async def collect(self, provider: Provider, batch: Mapping[str, Any], owner: Owner,
                      record: Mapping[str, Any] | None = None) -> dict[str, Any]:
        url = batch.get("results_url")
        if not isinstance(url, str) or not url:
            return {"output_file_id": None, "error_file_id": None}
        ids, tools = await self._inputs(record) if record is not None else ({}, {})
        files = ResultFiles(self.store, owner, str(batch["id"]))
        try:
            async for raw in jsonl_lines(stream_url(provider, url)):
                ok, line = _result(raw, tools, ids)
                files.write(ok, line)
            return await files.commit()
        except BaseException as exc:
            files.abort()
            if isinstance(exc, ForeignHost):
                raise BatchFailed(502, exc.message, type="server_error",
                                  code="results_url_refused") from None
            raise

    async def _inputs(self, record: Mapping[str, Any]
                      ) -> tuple[dict[str, str], dict[str, str]]:
        """What the results need from the input file: the custom_ids sent in place of the
        lines' own (sent -> own), and custom_id -> the tool that carries the answer of a
        line asking for a json_schema response (the translation makes one; its input is
        the answer's content)."""
        ids: dict[str, str] = {}
        tools: dict[str, str] = {}
        async for number, line in self.store.lines(record):
            data = orjson.loads(line)
            custom_id = str(data["custom_id"])
            if (sent := anthropic_id(number, custom_id)) != custom_id:
                ids[sent] = custom_id
            if b"json_schema" not in line:
                continue
            try:
                tool = to_anthropic(data["body"]).json_tool
            except TranslationError:
                continue
            if tool is not None:
                tools[custom_id] = tool
        return ids, tools


def _result(raw: bytes, tools: Mapping[str, str],
            ids: Mapping[str, str]) -> tuple[bool, dict[str, Any]]:
    """One line of Anthropic's results as (answered, a line of OpenAI's batch output), with
    the line's own custom_id (``ids``: the ones sent in place of theirs)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(result, dict):
        return False, output_line(None, None, None, error={
            "code": "bad_upstream", "message": "the provider sent a result that is not a JSON "
            "object with a result"})
    custom_id, kind = data.get("custom_id"), result.get("type")
    custom_id = ids.get(custom_id, custom_id) if isinstance(custom_id, str) else custom_id
    message = result.get("message")
    if kind == "succeeded" and isinstance(message, dict):
        completion = from_anthropic(message, tools.get(str(custom_id)))
        return True, output_line(custom_id, 200, completion, str(message.get("id") or ""))
    if kind in NOT_RUN:
        code, text = NOT_RUN[kind]
        return False, output_line(custom_id, None, None, error={"code": code, "message": text})
    error = result.get("error")
    error = error if isinstance(error, dict) else {}
    if isinstance(error.get("error"), dict):  # {"type": "error", "error": {type, message}}
        error = error["error"]
    kind = str(error.get("type") or "api_error")
    text = str(error.get("message") or kind)
    status = ERROR_STATUS.get(kind, 500)
    code = error_code(kind, text) or kind
    body = {"error": {"message": text, "type": error_type(status), "code": code, "param": None}}
    return False, output_line(custom_id, status, body, error={"code": code, "message": text})
