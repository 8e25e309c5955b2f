"""The files of /v1/files: contents encrypted in ``<data_dir>/files/<id>`` (crypt.py), their
metadata in ``files.db`` (store/files_db.py), each owned by the key that uploaded it.

The Python API other features use (batches, fine-tuning, provider batches):

    store = file_store(context)       # gateway.builtin.files: one per data directory and process
    owner = Owner.of(request.scope["gateway.key"])
    record = await store.get(file_id, owner)      # metadata dict, or None (not found / not yours)
    async for chunk in store.read(record):        # the plaintext, streamed (64 KiB frames)
        ...
    async for number, line in store.lines(record):  # JSONL lines, 1-based, as bytes
        ...
    upload = store.begin(owner, "out.jsonl", "batch_output")   # write a new file
    upload.write(b"...")                          # as often as needed
    record = await upload.commit()                # or upload.abort()

The files key: a random key kept in the vault as the secret ``gateway-files-key`` (made on
first use, so it is encrypted under the master key and survives `gateway secrets
rotate-master`). Each file's key is derived from it and the file's id.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

import nacl.exceptions
import nacl.secret

from .. import datadir
from ..errors import GatewayError
from ..logs import get_logger
from ..store import files_db
from ..store.writer import Writer
from ..units import size_text
from ..vault import Vault, VaultError
from . import crypt
from .jsonl import CHECKED_PURPOSES, LineCheck

if TYPE_CHECKING:
    from ..graph.graph import KeySpec

log = get_logger("gateway.files")

FILES_KEY_SECRET = "gateway-files-key"
PURPOSES = ("batch", "fine-tune", "user_data", "assistants", "vision", "evals")
# Purposes of files the gateway writes itself (batch results).
OUTPUT_PURPOSES = ("batch_output",)
# Contents without a row this much older than their last write are what an interrupted upload
# left (a process killed mid-upload): sweep() removes them. An upload in progress writes a
# frame at least every few seconds (a stalled client is cut off long before).
ORPHAN_AGE = 3600.0


@dataclass(frozen=True, slots=True)
class Owner:
    """Who owns a file: a key, by its SHA-256 ('' when the gateway needs no key)."""

    sha256: str
    name: str | None = None

    @classmethod
    def of(cls, key: "KeySpec | None") -> "Owner":
        return cls("", None) if key is None else cls(key.sha256 or f"name:{key.name}", key.name)


def not_found(kind: str, ident: str, param: str = "file_id") -> GatewayError:
    return GatewayError(404, f"No such {kind} object: {ident}", code=f"{kind.lower()}_not_found",
                        param=param)


class FileStore:
    def __init__(self, data_dir: str, env: Mapping[str, str] | None = None):
        self.data_dir = os.path.abspath(data_dir)
        self.db_path = files_db.path(self.data_dir)
        self.blobs = files_db.blob_dir(self.data_dir)
        self.vault = Vault(self.data_dir, env)
        self.writer = Writer(lambda: files_db.connect(self.db_path),
                             name=f"files-writer:{self.db_path}")
        self._key: bytes | None = None
        self._key_lock = threading.Lock()
        self.writing: set[str] = set()  # ids of the uploads this process is writing
        # Bytes written so far by the uploads this process is receiving, by owner (the
        # storage quota counts them with the owner's files: StorageQuota).
        self.pending: dict[str, int] = {}

    # -- keys ------------------------------------------------------------------------------

    def files_key(self) -> bytes:
        """The files key (from the vault; made there on first use). When the vault cannot be
        opened: GatewayError 503 (the operator must act; the caller can only come back later),
        which names nothing of the server, and the log says what is wrong and where."""
        with self._key_lock:
            if self._key is None:
                try:
                    text = self.vault.setdefault(FILES_KEY_SECRET, crypt.new_files_key)
                    self._key = bytes.fromhex(text)
                except (VaultError, ValueError) as exc:
                    log.error("files_key_unavailable", error=str(exc))
                    raise GatewayError(503, "file storage is unavailable: the gateway cannot "
                                       "read its files key from its vault (its log says why)",
                                       type="server_error", code="files_key_unavailable") from None
            return self._key

    def box(self, label: str) -> nacl.secret.SecretBox:
        """A SecretBox for small records (batch results) under a key bound to ``label``."""
        return nacl.secret.SecretBox(crypt.file_key(self.files_key(), label))

    def seal(self, label: str, data: bytes) -> bytes:
        return bytes(self.box(label).encrypt(data))

    def unseal(self, label: str, data: bytes) -> bytes:
        try:
            return self.box(label).decrypt(data)
        except nacl.exceptions.CryptoError:
            raise GatewayError(500, f"a stored record of {label} does not decrypt",
                               type="server_error", code="damaged_record") from None

    # -- metadata --------------------------------------------------------------------------

    async def get(self, file_id: str, owner: Owner) -> dict[str, Any] | None:
        return await self.writer.run(lambda c: files_db.get_file(c, file_id, owner.sha256))

    async def require(self, file_id: str, owner: Owner, param: str = "file_id") -> dict[str, Any]:
        record = await self.get(file_id, owner)
        if record is None:
            raise not_found("File", file_id, param)
        return record

    async def list(self, owner: Owner, purpose: str | None = None, after: str | None = None,
                   limit: int = 10000, descending: bool = True) -> list[dict[str, Any]]:
        return await self.writer.run(
            lambda c: files_db.list_files(c, owner.sha256, purpose, after, limit, descending))

    async def used_bytes(self, owner: Owner) -> int:
        """The bytes of ``owner``'s files (batch outputs included)."""
        return await self.writer.run(lambda c: files_db.owner_bytes(c, owner.sha256))

    async def delete(self, file_id: str, owner: Owner) -> bool:
        deleted = await self.writer.run(lambda c: files_db.delete_file(c, file_id, owner.sha256))
        if deleted:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._blob(file_id))
        return deleted

    async def sweep(self, min_age: float = ORPHAN_AGE) -> dict[str, builtins.list[str]]:
        """Remove what interrupted uploads left: contents in the files folder without a
        row, last written more than ``min_age`` seconds ago and not being written by this
        process; and rows whose contents are gone (they could only answer file_missing).
        What was removed, each logged."""
        known = await self.writer.run(files_db.file_ids)
        contents, missing = await asyncio.to_thread(self._orphans, known,
                                                    frozenset(self.writing), min_age)
        if missing:
            await self.writer.run(lambda c: files_db.forget_files(c, missing))
        for name in contents:
            log.warning("file_orphan_removed", file=name, reason="contents without a record")
        for file_id in missing:
            log.warning("file_orphan_removed", file=file_id, reason="record without contents")
        return {"contents": contents, "records": missing}

    def _orphans(self, known: set[str], writing: frozenset[str],
                 min_age: float) -> tuple[builtins.list[str], builtins.list[str]]:
        try:
            names = set(os.listdir(self.blobs))
        except FileNotFoundError:
            names = set()
        removed: builtins.list[str] = []
        now = time.time()
        for name in sorted(names - known - writing):
            path = os.path.join(self.blobs, name)
            try:
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < min_age:
                    continue
                if name in self.writing:  # an upload began meanwhile under this name
                    continue
                os.unlink(path)
            except FileNotFoundError:
                continue
            removed.append(name)
        # Rows whose contents are gone: checked again one by one (a file deleted meanwhile
        # loses its row too, so it is harmless to name it).
        missing = sorted(i for i in known - names
                         if not os.path.exists(os.path.join(self.blobs, i)))
        return removed, missing

    # -- contents --------------------------------------------------------------------------

    def begin(self, owner: Owner, filename: str, purpose: str | None) -> "Upload":
        return Upload(self, owner, filename, purpose)

    async def read(self, record: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """The plaintext of a stored file, frame by frame. GatewayError 500 when it is
        damaged or gone."""
        key = crypt.file_key(self.files_key(), record["id"])
        try:
            handle = open(self._blob(record["id"]), "rb")
        except FileNotFoundError:
            raise GatewayError(500, f"the contents of {record['id']} are missing from "
                               f"{self.blobs}", type="server_error", code="file_missing") from None
        with handle:
            frames = crypt.read_frames(handle, key)
            while True:
                try:
                    chunk = next(frames)
                except StopIteration:
                    return
                except crypt.DamagedFile as exc:
                    raise GatewayError(500, f"the stored file {record['id']} is damaged: {exc}",
                                       type="server_error", code="file_damaged") from None
                yield chunk
                await asyncio.sleep(0)  # a long file does not hold the event loop

    async def lines(self, record: Mapping[str, Any]) -> AsyncIterator[tuple[int, bytes]]:
        """(line number, line) of a stored text file, blank lines skipped."""
        number, partial = 0, b""
        async for chunk in self.read(record):
            data = partial + chunk
            *complete, partial = data.split(b"\n")
            for line in complete:
                number += 1
                if line.strip():
                    yield number, line
        if partial.strip():
            yield number + 1, partial

    def _blob(self, file_id: str) -> str:
        return os.path.join(self.blobs, file_id)

    async def aclose(self) -> None:
        await self.writer.aclose()


class Upload:
    """A file being written: ``write`` as often as needed, then ``commit`` (checks the JSONL
    of batch and fine-tune files, records it) or ``abort``."""

    def __init__(self, store: FileStore, owner: Owner, filename: str, purpose: str | None):
        self.store, self.owner, self.filename, self.purpose = store, owner, filename, purpose
        self.id = "file-" + secrets.token_hex(12)
        self.created_at = int(time.time())
        key = crypt.file_key(store.files_key(), self.id)  # no key (vault): no file either
        datadir.private_dir(store.blobs)
        self.path = store._blob(self.id)
        store.writing.add(self.id)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, datadir.FILE_MODE)
        except BaseException:
            store.writing.discard(self.id)
            raise
        self._handle = os.fdopen(fd, "wb")
        try:
            self._frames = crypt.FrameWriter(self._handle, key)
        except BaseException:
            self.abort()
            raise
        self.check = LineCheck(purpose) if purpose in CHECKED_PURPOSES else None

    @property
    def size(self) -> int:
        return self._frames.size

    def write(self, data: bytes) -> None:
        self._frames.write(data)
        if self.check is not None and not self.check.full:
            self.check.feed(data)

    async def commit(self, purpose: str | None = None,
                     quota: "StorageQuota | None" = None) -> dict[str, Any]:
        """Record the file (``purpose``: when it was not known at ``begin``); GatewayError 400
        (and nothing kept) when the lines of a batch or fine-tune file are wrong, 413 when
        the owner's files would pass ``quota`` with it (checked in the write that records
        it, so uploads ending together, in any process, cannot pass it)."""
        purpose = purpose or self.purpose or "user_data"
        try:
            self._frames.close()
            await asyncio.to_thread(_flush, self._handle)
            record = {"id": self.id, "owner": self.owner.sha256, "owner_name": self.owner.name,
                      "filename": self.filename, "purpose": purpose, "bytes": self.size,
                      "created_at": self.created_at, "status": "processed", "lines": None}
            check = self.check if self.check is not None and self.check.purpose == purpose \
                else None
            if check is None and purpose in CHECKED_PURPOSES:  # the purpose came late
                check = LineCheck(purpose)
                async for chunk in self.store.read(record):
                    check.feed(chunk)
                    if check.full:
                        break
            if check is not None:
                check.finish()
                if check.errors:
                    raise GatewayError(
                        400, f"invalid {purpose} file: " + "; ".join(check.errors),
                        code="invalid_file", param="file")
                record["lines"] = check.lines
            over = await self.store.writer.run(lambda c: _insert(c, record, quota))
            if over is not None and quota is not None:
                raise quota.refusal(over, self.size)
        except BaseException:
            self.abort()
            raise
        self.store.writing.discard(self.id)
        return record

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.store.writing.discard(self.id)


def _insert(conn: Any, record: dict[str, Any], quota: "StorageQuota | None") -> int | None:
    """Record the file; or, when its owner's files would pass ``quota`` with it, record
    nothing and return the bytes they hold."""
    if quota is not None:
        used = files_db.owner_bytes(conn, record["owner"])
        if used + record["bytes"] > quota.limit:
            return used
    files_db.insert_file(conn, record)
    return None


@dataclass(slots=True)
class StorageQuota:
    """The storage quota (``files.max_bytes_per_key``, or the key's own
    ``limits.file_storage``: ``setting``) for one upload: the owner's files (batch outputs
    included) and what its uploads in progress in this process have written may not pass
    ``limit`` bytes. ``used``: the owner's files when the upload began."""

    store: FileStore
    owner: Owner
    limit: int
    used: int
    setting: str = "files.max_bytes_per_key"  # where the limit comes from
    written: int = 0  # by this upload

    def check(self, more: int) -> GatewayError | None:
        """The refusal when ``more`` bytes of this upload do not fit, else None."""
        held = self.used + self.store.pending.get(self.owner.sha256, 0)
        return self.refusal(held - self.written, self.written + more, streaming=True) \
            if held + more > self.limit else None

    def add(self, size: int) -> None:
        """``size`` more bytes written by this upload."""
        self.written += size
        pending = self.store.pending
        pending[self.owner.sha256] = pending.get(self.owner.sha256, 0) + size

    def release(self) -> None:
        """The upload ended (recorded or not): its bytes are no longer in progress."""
        pending, sha = self.store.pending, self.owner.sha256
        left = pending.get(sha, 0) - self.written
        if left > 0:
            pending[sha] = left
        else:
            pending.pop(sha, None)
        self.written = 0

    def refusal(self, used: int, adding: int, streaming: bool = False) -> GatewayError:
        who = f"key '{self.owner.name}'" if self.owner.name else "the callers without a key"
        return GatewayError(
            413, f"storage quota exceeded: {who} may keep {size_text(self.limit)} of files "
            f"({self.setting}) and holds {size_text(used)}; this upload needs "
            f"{size_text(adding)}{' or more' if streaming else ''}: delete files no longer "
            "needed (DELETE /v1/files/{file_id}) and upload again",
            code="storage_quota_exceeded", param="file")


def _flush(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def public(record: Mapping[str, Any]) -> dict[str, Any]:
    """A file in OpenAI's shape."""
    return {"object": "file", "id": record["id"], "bytes": record["bytes"],
            "created_at": record["created_at"], "filename": record["filename"],
            "purpose": record["purpose"], "status": record["status"], "expires_at": None,
            "status_details": record.get("status_details")}
