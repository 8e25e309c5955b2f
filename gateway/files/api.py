"""/v1/files in OpenAI's shape: upload (multipart, streamed to disk encrypted: never the whole
file in memory), list, retrieve, content, delete. Each file belongs to the key that uploaded it;
any other key gets 404."""

from __future__ import annotations

import errno
import os
import sqlite3
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import orjson
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..errors import GatewayError, storage_reason
from ..hookspecs import DISPATCH_SCOPE, KEY_SCOPE
from ..logs import get_logger
from ..units import size_bytes
from .store import OUTPUT_PURPOSES, PURPOSES, FileStore, Owner, StorageQuota, Upload, public

if TYPE_CHECKING:
    from ..middleware.limits import Limits

MAX_FIELD = 4096  # bytes of a form field other than the file
MAX_FIELDS = 16  # form fields other than the file (all held in memory until the end)
MAX_LIST = 10000
FORM_SLACK = 64 * 1024  # bytes of a multipart body besides the file, at most, for size checks
DEFAULT_MAX_BODY = 20 * 1024 * 1024  # server.max_body's default, when no graph is at hand

Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error_response(err: GatewayError) -> Response:
    return Response(err.openai_body(), status_code=err.status, headers=err.headers,
                    media_type="application/json")


log = get_logger("gateway.files")

FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def storage_error(exc: sqlite3.Error | OSError) -> GatewayError:
    """What the caller is told when the data directory fails under a files endpoint: 507 when
    it is full, else 503; never taken for a missing file or another key's. The answer names
    no path of the server; the log does."""
    log.error("file_store_failed", error=f"{type(exc).__name__}: {exc}")
    if isinstance(exc, OSError) and exc.errno in FULL or "full" in str(exc).lower():
        return GatewayError(507, "the gateway's data directory is full: the file or record "
                            f"cannot be stored ({storage_reason(exc)})", type="server_error",
                            code="storage_full")
    return GatewayError(503, f"the gateway's file store cannot be used now "
                        f"({storage_reason(exc)})", type="server_error",
                        code="storage_unavailable")


def answers_errors(endpoint: Endpoint, calls: "Limits | None" = None, what: str = ""
                   ) -> Endpoint:
    """GatewayError raised by ``endpoint`` becomes its answer, in OpenAI's shape; so does a
    failing data directory (a damaged or locked files.db, a full disk: storage_error). With
    ``calls`` (the built-in limits), the call first counts as one request against the
    caller's request limits (429 when one is spent; ``what`` names the API in the metrics),
    and its answer carries the x-ratelimit-* headers."""
    async def serve(request: Request) -> Response:
        limited: dict[str, str] = {}
        try:
            if calls is not None:
                limited = await calls.count_call(request.scope.get(KEY_SCOPE),
                                                 request.headers, what)
            response = await endpoint(request)
        except GatewayError as err:
            response = error_response(err)
        except (sqlite3.Error, OSError) as exc:
            response = error_response(storage_error(exc))
        if limited:
            response.headers.update(limited)
        return response
    return serve


async def bounded_body(request: Request) -> bytes:
    """A JSON request's whole body, at most ``server.max_body`` of the running config (413
    past it, before more is held), as for every other API body."""
    dispatch = request.scope.get(DISPATCH_SCOPE)
    limit = dispatch.graph().settings.max_body if dispatch is not None else DEFAULT_MAX_BODY
    declared = request.headers.get("content-length")
    too_large = GatewayError(413, f"the request body is larger than {limit} bytes "
                             "(server.max_body)", code="request_too_large")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def owner_of(request: Request) -> Owner:
    return Owner.of(request.scope.get(KEY_SCOPE))


def page(request: Request, default: int = MAX_LIST) -> tuple[int, str | None]:
    """``limit`` and ``after`` of a list request."""
    raw = request.query_params.get("limit")
    try:
        limit = default if raw is None else int(raw)
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_LIST:
        raise GatewayError(400, f"'limit' must be an integer from 1 to {MAX_LIST}",
                           code="invalid_value", param="limit")
    return limit, request.query_params.get("after")


def listing(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    shown = items[:limit]
    return {"object": "list", "data": shown, "first_id": shown[0]["id"] if shown else None,
            "last_id": shown[-1]["id"] if shown else None, "has_more": len(items) > limit}


class FilesEndpoints:
    def __init__(self, store: FileStore, max_size: int, calls: "Limits | None" = None,
                 max_bytes_per_key: int | None = None):
        self.store = store
        self.max_size = max_size
        self.calls = calls  # every call counts against the caller's request limits
        self.max_bytes_per_key = max_bytes_per_key  # files.max_bytes_per_key (None: none)

    def routes(self) -> list[Route]:
        def served(endpoint: Endpoint) -> Endpoint:
            return answers_errors(endpoint, self.calls, "/v1/files")
        return [Route("/v1/files", served(self.upload), methods=["POST"]),
                Route("/v1/files", served(self.list), methods=["GET"]),
                Route("/v1/files/{file_id}", served(self.retrieve), methods=["GET"]),
                Route("/v1/files/{file_id}", served(self.delete), methods=["DELETE"]),
                Route("/v1/files/{file_id}/content", served(self.content), methods=["GET"])]

    async def upload(self, request: Request) -> Response:
        length = request.headers.get("content-length")
        declared = int(length) if length is not None and length.isdigit() else 0
        if declared > self.max_size + FORM_SLACK:
            raise self._too_large()
        owner, quota, (limit, setting) = owner_of(request), None, self.quota_of(request)
        if limit is not None:  # a full quota refuses before any byte is read
            quota = StorageQuota(self.store, owner, limit, await self.store.used_bytes(owner),
                                 setting)
            refused = quota.check(max(1, declared - FORM_SLACK))
            if refused is not None:
                raise refused
        form = StreamedForm(self.store, owner, self.max_size, quota)
        try:
            await form.parse(request)
            if form.upload is None:
                raise GatewayError(400, "no 'file' field in the form: send the file as "
                                   "multipart/form-data field 'file'", code="missing_file",
                                   param="file")
            purpose = form.fields.get("purpose")
            if purpose not in PURPOSES or purpose in OUTPUT_PURPOSES:
                raise GatewayError(400, f"'purpose' must be one of {', '.join(PURPOSES)}, not "
                                   f"{purpose!r}", code="invalid_value", param="purpose")
            record = await form.upload.commit(purpose, quota)
        except BaseException:
            if form.upload is not None:
                form.upload.abort()
            raise
        finally:
            if quota is not None:
                quota.release()
        return json_response(public(record))

    async def list(self, request: Request) -> Response:
        limit, after = page(request)
        purpose = request.query_params.get("purpose")
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise GatewayError(400, "'order' must be asc or desc", code="invalid_value",
                               param="order")
        rows = await self.store.list(owner_of(request), purpose, after, limit + 1,
                                     descending=order == "desc")
        return json_response(listing([public(r) for r in rows], limit))

    async def retrieve(self, request: Request) -> Response:
        record = await self.store.require(request.path_params["file_id"], owner_of(request))
        return json_response(public(record))

    async def delete(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        await self.store.require(file_id, owner_of(request))
        await self.store.delete(file_id, owner_of(request))
        return json_response({"id": file_id, "object": "file", "deleted": True})

    async def content(self, request: Request) -> Response:
        record = await self.store.require(request.path_params["file_id"], owner_of(request))
        chunks = self.store.read(record)
        first = await anext(chunks, b"")  # a missing or damaged file fails before the 200
        return StreamingResponse(_prepend(first, chunks), media_type="application/octet-stream",
                                 headers={"content-length": str(record["bytes"])})

    def quota_of(self, request: Request) -> tuple[int | None, str]:
        """The caller's storage quota (None: none) and the setting that gives it: the key's
        own limits.file_storage, else files.max_bytes_per_key."""
        key = request.scope.get(KEY_SCOPE)
        own = key.limits.get("file_storage") if key is not None and key.limits else None
        if key is None or own is None:
            return self.max_bytes_per_key, "files.max_bytes_per_key"
        return size_bytes(own), f"keys.{key.name}.limits.file_storage"

    def _too_large(self) -> GatewayError:
        return GatewayError(413, f"the file is larger than {self.max_size} bytes "
                            "(files.max_size)", code="file_too_large", param="file")


async def _prepend(first: bytes, rest: Any) -> Any:
    if first:
        yield first
    async for chunk in rest:
        yield chunk


class StreamedForm:
    """A multipart/form-data body parsed as it arrives: the ``file`` part goes straight into
    an encrypted Upload, the other fields (``purpose``) are kept if small."""

    def __init__(self, store: FileStore, owner: Owner, max_size: int,
                 quota: StorageQuota | None = None):
        self.store, self.owner, self.max_size, self.quota = store, owner, max_size, quota
        self.fields: dict[str, str] = {}
        self.upload: Upload | None = None
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._name: str | None = None
        self._filename: str | None = None
        self._text = bytearray()
        self._failure: GatewayError | None = None
        self._fields_seen = 0

    async def parse(self, request: Request) -> None:
        kind, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise GatewayError(400, "upload the file as multipart/form-data (with a boundary)",
                               code="invalid_content_type")
        parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end})
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                if self._failure is not None:
                    raise self._failure
            parser.finalize()
        except MultipartParseError as exc:
            raise GatewayError(400, f"the multipart body cannot be read: {exc}",
                               code="invalid_multipart") from None
        if self._failure is not None:
            raise self._failure

    def _fail(self, err: GatewayError) -> None:
        if self._failure is None:
            self._failure = err

    def _part_begin(self) -> None:
        self._headers, self._name, self._filename = {}, None, None
        self._text.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        self._name = name.decode("utf-8", "replace") if name is not None else None
        filename = options.get(b"filename")
        if self._name is not None and self._name != "file":
            self._fields_seen += 1
            if self._fields_seen > MAX_FIELDS:
                return self._fail(GatewayError(400, f"more than {MAX_FIELDS} form fields besides "
                                               "'file'", code="invalid_multipart"))
        if self._name == "file":
            if self.upload is not None:
                return self._fail(GatewayError(400, "only one 'file' per upload",
                                               code="invalid_multipart", param="file"))
            shown = os.path.basename((filename or b"file").decode("utf-8", "replace"))
            # Kept without control characters: a name is printed by `gateway files list`, and
            # an escape sequence in it would drive the operator's terminal.
            shown = "".join(ch for ch in shown if ch.isprintable())
            # The purpose may come after the file (curl -F in that order): then the lines are
            # checked once the file is in (Upload.commit).
            self.upload = self.store.begin(self.owner, shown[:255] or "file",
                                           self.fields.get("purpose"))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._failure is not None:
            return
        if self._name == "file" and self.upload is not None:
            if self.upload.size + (end - start) > self.max_size:
                return self._fail(GatewayError(
                    413, f"the file is larger than {self.max_size} bytes (files.max_size)",
                    code="file_too_large", param="file"))
            if self.quota is not None:  # stop as soon as the owner's quota would be passed
                refused = self.quota.check(end - start)
                if refused is not None:
                    return self._fail(refused)
                self.quota.add(end - start)
            self.upload.write(data[start:end])
        elif self._name is not None:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD:
                self._fail(GatewayError(400, f"the form field {self._name!r} is longer than "
                                        f"{MAX_FIELD} bytes", code="invalid_multipart"))

    def _part_end(self) -> None:
        if self._name is not None and self._name != "file" and self._failure is None:
            self.fields[self._name] = self._text.decode("utf-8", "replace")
