"""What every provider's batch API adapter is (``NativeBatchAPI``) and the pieces they share:
the statuses of OpenAI's batch object (the gateway's public shape), ``BatchFailed`` (a batch
the gateway cannot bring back: it ends ``failed``), and ``ResultFiles`` (the output and error
files of a batch written line by line as the provider's results arrive)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import orjson

from ..errors import GatewayError
from ..logs import get_logger
from ..providers.base import Provider
from .jsonl import BATCH_URLS
from .store import FileStore, Owner, Upload

log = get_logger("gateway.batches")

# OpenAI's batch statuses (the gateway's batch rows keep these).
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
STATUSES = frozenset({"validating", "in_progress", "finalizing", "completed", "failed",
                      "expired", "cancelling", "cancelled"})
MAX_RESULT_LINE = 64 * 1024 * 1024  # a longer line of a provider's results is refused


class BatchFailed(GatewayError):
    """A provider batch whose results the gateway will not fetch (asking again would not
    help): the gateway batch ends ``failed`` with this message in its ``errors``."""


class NativeBatchAPI:
    """One provider family's batch API behind the gateway's /v1/batches (OpenAI's shapes).

    - ``submit``: the gateway's input file (each line's ``body.model`` a route, mapped to the
      target's model by ``models``) sent to the provider; the provider's batch object (its
      ``id`` is what the gateway follows).
    - ``refresh`` / ``cancel``: the provider's batch object now.
    - ``mapped``: that object as values of the gateway's batch row: ``status`` (one of
      ``STATUSES``), ``total``/``completed``/``failed``, timestamps, ``errors``.
    - ``collect``: once ended, its results as gateway files of ``owner`` (purpose
      ``batch_output``, OpenAI's batch output format): ``{"output_file_id", "error_file_id"}``,
      gateway ids or None. ``record`` is the batch's input file (None when it was deleted).
      Its usage is read from those files afterwards (native_follow.py), so a copy that
      fails midway and is done again counts nothing twice.
    - ``provider_files`` / ``delete_file``: what the batch keeps at the provider (its input,
      output and error files) and deleting one there, once the results are in the gateway's
      files (none by default).
    """

    endpoints: frozenset[str] = frozenset(BATCH_URLS)  # the batch endpoints it runs

    def __init__(self, store: FileStore):
        self.store = store

    async def submit(self, provider: Provider, models: Mapping[str, str],
                     record: Mapping[str, Any], endpoint: str, completion_window: str,
                     metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        raise NotImplementedError

    async def refresh(self, provider: Provider, batch_id: str) -> dict[str, Any]:
        raise NotImplementedError

    async def cancel(self, provider: Provider, batch_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def mapped(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def collect(self, provider: Provider, batch: Mapping[str, Any], owner: Owner,
                      record: Mapping[str, Any] | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def provider_files(self, batch: Mapping[str, Any]) -> list[str]:
        return []

    async def delete_file(self, provider: Provider, file_id: str) -> None:
        """Delete one of ``provider_files`` at the provider (gone already counts as
        deleted); GatewayError when the provider refuses or cannot be reached."""
        raise NotImplementedError

    async def forget(self, provider: Provider, file_ids: list[str]) -> list[str]:
        """Delete ``file_ids`` at the provider, best-effort: the ones to try again
        (``forget``)."""
        return await forget(provider, file_ids, self.delete_file)


async def forget(provider: Provider, file_ids: list[str],
                 delete: Callable[[Provider, str], Awaitable[None]],
                 what: str = "batch") -> list[str]:
    """Delete ``file_ids`` at the provider with ``delete``, best-effort: the ones to try
    again (the provider was unreachable, busy or failed; logged). One it refuses for good (a
    4xx other than 408, 409 and 429: no permission, ...) is logged as an error and left
    there. ``what`` starts the log events' names (batch, fine_tuning)."""
    left = []
    for file_id in file_ids:
        try:
            await delete(provider, file_id)
        except GatewayError as err:
            if 400 <= err.status < 500 and err.status not in (408, 409, 429):
                log.error(f"{what}_provider_file_kept", provider=provider.name,
                          file=file_id, error=err.message)
                continue
            log.warning(f"{what}_provider_file_not_deleted", provider=provider.name,
                        file=file_id, error=err.message)
            left.append(file_id)
        else:
            log.info(f"{what}_provider_file_deleted", provider=provider.name, file=file_id)
    return left


class ResultFiles:
    """The output file (answered lines) and error file (the others) of a batch, in OpenAI's
    batch output format, written one line at a time as results arrive; a file with no line is
    not made (its id None)."""

    def __init__(self, store: FileStore, owner: Owner, name: str):
        self.store, self.owner, self.name = store, owner, name
        self.uploads: dict[bool, Upload] = {}

    def write(self, ok: bool, line: Mapping[str, Any]) -> None:
        upload = self.uploads.get(ok)
        if upload is None:
            upload = self.uploads[ok] = self.store.begin(
                self.owner, f"{self.name}_{'output' if ok else 'errors'}.jsonl", "batch_output")
        upload.write(orjson.dumps(line) + b"\n")

    async def commit(self) -> dict[str, str | None]:
        ids: dict[str, str | None] = {"output_file_id": None, "error_file_id": None}
        for ok, field in ((True, "output_file_id"), (False, "error_file_id")):
            if ok in self.uploads:
                ids[field] = (await self.uploads.pop(ok).commit())["id"]
        return ids

    def abort(self) -> None:
        for upload in self.uploads.values():
            upload.abort()
        self.uploads.clear()


def unix_time(value: Any) -> int | None:
    """An RFC 3339 / ISO 8601 time (Anthropic's, AWS's) as Unix seconds (OpenAI's batch
    timestamps); None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def output_line(custom_id: Any, status: int | None, body: Any, request_id: str = "",
                error: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One line of OpenAI's batch output format: the answer (``status`` and ``body``; None
    when the request was never sent) and, for a line of the error file, ``error``."""
    response = None if status is None else {"status_code": status, "request_id": request_id,
                                            "body": body}
    return {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id,
            "response": response, "error": dict(error) if error is not None else None}


async def jsonl_lines(chunks: AsyncIterator[bytes],
                      limit: int = MAX_RESULT_LINE) -> AsyncIterator[bytes]:
    """The non-blank lines of a JSONL body arriving in chunks (one line held at a time)."""
    held = b""
    async for chunk in chunks:
        held += chunk
        *lines, held = held.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
        if len(held) > limit:  # asking again would give the same line
            raise BatchFailed(502, f"a line of the provider's results is over {limit} bytes",
                              type="server_error", code="bad_upstream")
    if held.strip():
        yield held
