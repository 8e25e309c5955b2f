"""A fake of Amazon Bedrock's batch inference control plane and of the S3 bucket its jobs use,
on one loopback port, checking requests as AWS does: every request SigV4-signed for the fake's
credentials and region, with service ``s3`` for objects (path-style ``/<bucket>/<key>``, a
Content-Length and x-amz-content-sha256 on a PUT) and ``bedrock`` for jobs.

POST /model-invocation-job (CreateModelInvocationJob: the input object must exist and hold
``{"recordId", "modelInput"}`` records with a Claude body), GET /model-invocation-job/<arn>,
POST /model-invocation-job/<arn>/stop. ``finish(arn)`` ends a job as Bedrock would: the output
object ``<output>/<job id>/input.jsonl.out`` with a ``modelOutput`` (text ``answer <recordId>``,
or a forced tool called with ``{"answer": <recordId>}``) per record, an ``error`` for records
whose prompt contains "fail"; a stopped job only ran its first record."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from gateway.providers.sigv4 import Credentials, sha256_hex

from .background_app import BackgroundApp
from .providers.sigv4_verify import parse_authorization, verify

ACCESS_KEY, SECRET_KEY, REGION = "AKIDFAKEBATCH", "fake/batch+secret", "us-west-2"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatch"
JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9+\-.]){0,63}")
SAFE_PATH = re.compile(r"[A-Za-z0-9._/%-]*")


def _s3_error(status: int, code: str) -> web.Response:
    return web.Response(status=status, content_type="application/xml",
                        text=f"<Error><Code>{code}</Code><Message>{code}</Message></Error>")


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status,
                             headers={"x-amzn-ErrorType": kind})


class FakeBedrockBatch(BackgroundApp):
    client_max_size = 64 * 1024**2

    def __init__(self) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        self.creds = Credentials(ACCESS_KEY, SECRET_KEY)
        self.objects: dict[tuple[str, str], bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.seen: list[tuple[str, str]] = []
        self._ids = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/model-invocation-job", self._create)
        app.router.add_get("/model-invocation-job/{arn:.+}", self._get_job)
        app.router.add_post("/model-invocation-job/{arn:.+}/stop", self._stop)
        app.router.add_put("/{bucket}/{key:.+}", self._put)
        app.router.add_get("/{bucket}/{key:.+}", self._get_object)
        app.router.add_delete("/{bucket}/{key:.+}", self._delete_object)

    def _refused(self, request: web.Request, body: bytes, service: str) -> str | None:
        self.seen.append((request.method, request.raw_path))
        auth = parse_authorization(request.headers.get("Authorization", ""))
        if auth is None or auth.region != REGION or auth.service != service:
            return f"Credential should be scoped to {REGION}/{service}"
        path, _, query = request.raw_path.partition("?")
        payload = None
        if service == "s3":
            payload = request.headers.get("x-amz-content-sha256")
            if payload is None:
                return "Missing required header for this request: x-amz-content-sha256"
            if payload != "UNSIGNED-PAYLOAD" and payload != sha256_hex(body):
                return "The provided 'x-amz-content-sha256' header does not match"
            if not SAFE_PATH.fullmatch(path):  # S3 signs its path as sent: keep it simple
                return "unexpected characters in the key"
        return verify(request.method, path, query, dict(request.headers), body, self.creds,
                      payload)

    # -- S3 ------------------------------------------------------------------------------

    async def _put(self, request: web.Request) -> web.Response:
        if request.content_length is None:
            return _s3_error(411, "MissingContentLength")
        body = await request.read()
        if self._refused(request, body, "s3"):
            return _s3_error(403, "SignatureDoesNotMatch")
        self.objects[(request.match_info["bucket"], request.match_info["key"])] = body
        return web.Response(status=200, headers={"ETag": '"fake"'})

    async def _get_object(self, request: web.Request) -> web.StreamResponse:
        if self._refused(request, b"", "s3"):
            return _s3_error(403, "SignatureDoesNotMatch")
        found = self.objects.get((request.match_info["bucket"], request.match_info["key"]))
        if found is None:
            return _s3_error(404, "NoSuchKey")
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        for start in range(0, len(found), 1000):
            await response.write(found[start:start + 1000])
        await response.write_eof()
        return response

    async def _delete_object(self, request: web.Request) -> web.Response:
        if self._refused(request, b"", "s3"):
            return _s3_error(403, "SignatureDoesNotMatch")
        self.objects.pop((request.match_info["bucket"], request.match_info["key"]), None)
        return web.Response(status=204)

    def object(self, uri: str) -> bytes | None:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return self.objects.get((bucket, key))

    # -- jobs ----------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        raw = await request.read()
        problem = self._refused(request, raw, "bedrock")
        if problem:
            return _error(403, "InvalidSignatureException", problem)
        body = json.loads(raw)
        required = {"jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig"}
        if not required <= set(body) or not JOB_NAME.fullmatch(body["jobName"]) \
                or body["roleArn"] != ROLE:
            return _error(400, "ValidationException", "invalid job")
        source = body["inputDataConfig"]["s3InputDataConfig"]
        content = self.object(source["s3Uri"])
        if content is None or source.get("s3InputFormat") != "JSONL":
            return _error(400, "ValidationException", "the input object does not exist")
        for record in map(json.loads, content.splitlines()):
            model_input = record["modelInput"]
            if set(record) != {"recordId", "modelInput"} or "model" in model_input \
                    or model_input.get("anthropic_version") != "bedrock-2023-05-31" \
                    or not isinstance(model_input.get("max_tokens"), int):
                return _error(400, "ValidationException", f"bad record {record}")
        job_id = f"j{next(self._ids):011d}"  # 12 lowercase letters and digits, as Bedrock's
        arn = f"arn:aws:bedrock:{REGION}:123456789012:model-invocation-job/{job_id}"
        self.jobs[arn] = {**body, "jobArn": arn, "status": "Submitted",
                          "submitTime": "2026-01-02T03:04:05.123Z",
                          "jobExpirationTime": "2026-01-03T03:04:05Z"}
        return web.json_response({"jobArn": arn})

    async def _get_job(self, request: web.Request) -> web.Response:
        problem = self._refused(request, b"", "bedrock")
        if problem:
            return _error(403, "InvalidSignatureException", problem)
        job = self.jobs.get(unquote(request.match_info["arn"]))
        if job is None:
            return _error(404, "ResourceNotFoundException", "no such job")
        return web.json_response(job)

    async def _stop(self, request: web.Request) -> web.Response:
        problem = self._refused(request, await request.read(), "bedrock")
        if problem:
            return _error(403, "InvalidSignatureException", problem)
        job = self.jobs.get(unquote(request.match_info["arn"]))
        if job is None:
            return _error(404, "ResourceNotFoundException", "no such job")
        if job["status"] not in ("Submitted", "Validating", "Scheduled", "InProgress"):
            return _error(400, "ValidationException", f"the job is {job['status']}")
        job["status"] = "Stopping"
        return web.Response(status=200)

    def finish(self, arn: str) -> None:
        job = self.jobs[arn]
        stopped = job["status"] == "Stopping"
        records = [json.loads(x) for x in
                   self.object(job["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]).splitlines()]
        lines, ok = [], 0
        for n, record in enumerate(records[:1] if stopped else records):
            model_input, record_id = record["modelInput"], record["recordId"]
            line: dict[str, Any] = {"recordId": record_id, "modelInput": model_input}
            if "fail" in json.dumps(model_input["messages"]):
                line["error"] = {"errorCode": 400, "errorMessage": "refused by the fake"}
            else:
                choice = model_input.get("tool_choice") or {}
                content = ([{"type": "tool_use", "id": f"toolu_{n}", "name": choice["name"],
                             "input": {"answer": record_id}}] if choice.get("type") == "tool"
                           else [{"type": "text", "text": f"answer {record_id}"}])
                line["modelOutput"] = {
                    "id": f"msg_bdrk_{n}", "type": "message", "role": "assistant",
                    "model": job["modelId"], "content": content,
                    "stop_reason": "tool_use" if choice.get("type") == "tool" else "end_turn",
                    "usage": {"input_tokens": 12, "output_tokens": 3}}
                ok += 1
            lines.append(json.dumps(line).encode() + b"\n")
        output = job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        bucket, _, prefix = output.removeprefix("s3://").partition("/")
        base = f"{prefix.rstrip('/')}/{arn.rsplit('/', 1)[-1]}"
        self.objects[(bucket, f"{base}/input.jsonl.out")] = b"".join(reversed(lines))
        self.objects[(bucket, f"{base}/manifest.json.out")] = json.dumps({
            "totalRecordCount": len(records), "processedRecordCount": len(lines),
            "successRecordCount": ok, "errorRecordCount": len(lines) - ok}).encode()
        job.update(status="Stopped" if stopped else "Completed",
                   endTime="2026-01-02T05:04:05Z")
