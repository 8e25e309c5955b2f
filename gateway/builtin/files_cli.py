"""`gateway files upload|list|delete` and `gateway batches create|status|cancel|results`: a
client of a running gateway's /v1/files and /v1/batches (--url, default $GATEWAY_URL or
http://127.0.0.1:8080; the key from --key or $GATEWAY_API_KEY)."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Iterable, Iterator

DEFAULT_URL = "http://127.0.0.1:8080"
CHUNK = 1024 * 1024


class CliError(Exception):
    pass


class _Refuse(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


# urllib follows redirects with every header, the key's Authorization included, to whatever
# host they name: these clients follow none.
NO_REDIRECTS = urllib.request.build_opener(_Refuse())


def redirect_refused(exc: urllib.error.HTTPError) -> str:
    return (f"{exc.reason}, a redirect to {exc.headers.get('Location', '?')}: not followed, "
            "the credential is not sent there (give the gateway's own address with --url)")


class Client:
    def __init__(self, args: argparse.Namespace):
        self.url = (args.url or os.environ.get("GATEWAY_URL") or DEFAULT_URL).rstrip("/")
        self.key = args.key or os.environ.get("GATEWAY_API_KEY") or ""

    def call(self, method: str, path: str, body: Any = None, *, raw: bool = False,
             data: Iterable[bytes] | bytes | None = None, headers: dict[str, str] | None = None
             ) -> Any:
        if body is not None:
            data, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, method=method)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if self.key:
            request.add_header("Authorization", f"Bearer {self.key}")
        try:
            with NO_REDIRECTS.open(request, timeout=600) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = exc.reason
            if 300 <= exc.code < 400:
                message = redirect_refused(exc)
            raise CliError(f"{method} {path}: {exc.code} {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise CliError(f"no gateway answered at {self.url} ({getattr(exc, 'reason', exc)}); "
                           "is `gateway serve` running? (--url to ask another)") from None
        return payload if raw else json.loads(payload)

    def upload(self, path: str, purpose: str) -> dict[str, Any]:
        """The file streamed as multipart/form-data (never read whole)."""
        boundary = "gateway-" + secrets.token_hex(12)
        name = os.path.basename(path).replace('"', "_")
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
                f"{purpose}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def parts() -> Iterator[bytes]:
            yield head
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk
            yield tail

        size = len(head) + os.path.getsize(path) + len(tail)
        result: dict[str, Any] = self.call(
            "POST", "/v1/files", data=parts(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                     "Content-Length": str(size)})
        return result


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _progress(batch: dict[str, Any]) -> str:
    counts = batch["request_counts"]
    total, done = counts["total"], counts["completed"] + counts["failed"]
    width = 30
    filled = int(width * done / total) if total else 0
    return (f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
            f"({counts['failed']} failed) {batch['status']}   ")


def files_upload(client: Client, args: argparse.Namespace) -> int:
    _print(client.upload(args.path, args.purpose))
    return 0


def files_list(client: Client, args: argparse.Namespace) -> int:
    query = f"?purpose={args.purpose}" if args.purpose else ""
    for item in client.call("GET", "/v1/files" + query)["data"]:
        print(f"{item['id']}  {item['purpose']:<12} {item['bytes']:>12}  {item['filename']}")
    return 0


def files_delete(client: Client, args: argparse.Namespace) -> int:
    client.call("DELETE", f"/v1/files/{args.id}")
    print(f"deleted {args.id}")
    return 0


def batches_create(client: Client, args: argparse.Namespace) -> int:
    file_id = args.input
    if os.path.exists(args.input):  # a local JSONL file: uploaded first
        file_id = client.upload(args.input, "batch")["id"]
    batch = client.call("POST", "/v1/batches", {"input_file_id": file_id,
                                                "endpoint": args.endpoint,
                                                "completion_window": "24h"})
    _print(batch)
    return 0


def batches_status(client: Client, args: argparse.Namespace) -> int:
    batch = client.call("GET", f"/v1/batches/{args.id}")
    while args.wait and batch["status"] not in ("completed", "failed", "expired", "cancelled"):
        sys.stderr.write(_progress(batch))
        sys.stderr.flush()
        time.sleep(args.interval)
        batch = client.call("GET", f"/v1/batches/{args.id}")
    if args.wait:
        sys.stderr.write(_progress(batch) + "\n")
    _print(batch)
    return 0 if batch["status"] in ("completed", "validating", "in_progress", "finalizing",
                                    "cancelling") else 1


def batches_cancel(client: Client, args: argparse.Namespace) -> int:
    _print(client.call("POST", f"/v1/batches/{args.id}/cancel"))
    return 0


def batches_results(client: Client, args: argparse.Namespace) -> int:
    batch = client.call("GET", f"/v1/batches/{args.id}")
    file_id = batch["error_file_id" if args.errors else "output_file_id"]
    if file_id is None:
        print(f"batch {args.id} ({batch['status']}) has no "
              f"{'error' if args.errors else 'output'} file", file=sys.stderr)
        return 1
    content = client.call("GET", f"/v1/files/{file_id}/content", raw=True)
    if args.output:
        with open(args.output, "wb") as fh:
            fh.write(content)
    else:
        sys.stdout.write(content.decode("utf-8", "replace"))
    return 0


def _command(function: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = function(Client(args), args)
            return code
        except CliError as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 1
    return run


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"the gateway (default $GATEWAY_URL or {DEFAULT_URL})")
    parser.add_argument("--key", help="the API key (default $GATEWAY_API_KEY)")


def register(subparsers: argparse._SubParsersAction) -> None:
    files = subparsers.add_parser("files", help="upload, list and delete /v1/files")
    verbs = files.add_subparsers(dest="verb", required=True)
    upload = verbs.add_parser("upload", help="upload a file (streamed)")
    upload.add_argument("path")
    upload.add_argument("--purpose", default="batch",
                        choices=["batch", "fine-tune", "user_data"])
    upload.set_defaults(func=_command(files_upload))
    listing = verbs.add_parser("list", help="your files")
    listing.add_argument("--purpose")
    listing.set_defaults(func=_command(files_list))
    delete = verbs.add_parser("delete", help="delete a file")
    delete.add_argument("id")
    delete.set_defaults(func=_command(files_delete))
    for parser in (upload, listing, delete):
        _common(parser)

    batches = subparsers.add_parser("batches", help="run JSONL batches through the gateway")
    verbs = batches.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="start a batch (a file id, or a JSONL file to "
                              "upload first)")
    create.add_argument("input")
    create.add_argument("--endpoint", default="/v1/chat/completions")
    create.set_defaults(func=_command(batches_create))
    status = verbs.add_parser("status", help="a batch's status and counts")
    status.add_argument("id")
    status.add_argument("--wait", action="store_true", help="until it ends, with a progress bar")
    status.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    status.set_defaults(func=_command(batches_status))
    cancel = verbs.add_parser("cancel", help="cancel a batch")
    cancel.add_argument("id")
    cancel.set_defaults(func=_command(batches_cancel))
    results = verbs.add_parser("results", help="the output (or --errors) file of a batch")
    results.add_argument("id")
    results.add_argument("--errors", action="store_true")
    results.add_argument("-o", "--output", help="write to this file instead of stdout")
    results.set_defaults(func=_command(batches_results))
    for parser in (create, status, cancel, results):
        _common(parser)
