"""Amazon Bedrock batch inference behind the gateway's /v1/batches (providers of type bedrock
with ``batch: native`` and ``bedrock_batch: {s3_uri, role_arn}``; Anthropic Claude models;
docs/files.md#provider-native-batches).

- ``submit``: every line's chat-completions body translated to the Claude Messages body Bedrock's
  InvokeModel takes (the same translation as Anthropic's, with ``anthropic_version``, no
  model), one record ``{"recordId", "modelInput"}`` per line (recordId: the line number, 11
  digits), checked and measured first, then streamed to S3 (``PUT <s3_uri>/<token>/input.jsonl``,
  SigV4, unsigned payload) and ``POST /model-invocation-job`` (CreateModelInvocationJob: the
  target's model, the role, output under ``<s3_uri>/<token>/output/``).
- ``refresh`` / ``cancel``: GetModelInvocationJob, StopModelInvocationJob; ``mapped``: its
  status as OpenAI's.
- ``collect``: the job's output object (``<output>/<job id>/input.jsonl.out``, in the configured
  bucket only) read line by line: each ``modelOutput`` translated to a chat.completion in the
  output file, each ``error`` and each record with no line (the job stopped or expired first)
  in the error file, matched to its custom_id through the input file; the counts are the
  lines written.

Credentials (signed per request, SigV4) go only to the configured endpoints: the Bedrock
control plane (``https://bedrock.<region>.amazonaws.com`` or ``bedrock_batch.endpoint``) and
the bucket (``https://<bucket>.s3.<region>.amazonaws.com``, or path-style under
``bedrock_batch.s3_endpoint``).
"""

from __future__ import annotations

import re
import secrets
from typing import Any, AsyncIterator, Mapping
from urllib.parse import quote

import orjson
import yarl

from ..errors import GatewayError
from ..providers.anthropic_response import from_anthropic
from ..providers.anthropic_translate import DEFAULT_MAX_TOKENS, to_anthropic
from ..providers.base import Provider
from ..providers.bedrock import region_of
from ..providers.native import TranslationError
from ..providers.sigv4 import Credentials, sha256_hex, sign
from .native_base import (
    ENDED, BatchFailed, NativeBatchAPI, ResultFiles, jsonl_lines, output_line, unix_time,
)
from .provider_api import call_url, get_stream
from .store import Owner

ANTHROPIC_VERSION = "bedrock-2023-05-31"
MIN_RECORDS = 100  # Bedrock's default quotas for one job (per model: may differ)
MAX_RECORDS = 50_000
MAX_BYTES = 1024**3  # one input file
INPUT = "input.jsonl"
UNSIGNED = "UNSIGNED-PAYLOAD"
# A job's ARN as Bedrock makes them: the only thing put into a control-plane path.
JOB_ARN = re.compile(r"arn:aws[a-z-]*:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:"
                     r"model-invocation-job/[a-z0-9]{12}")
STATUSES = {"Submitted": "validating", "Validating": "validating", "Scheduled": "validating",
            "InProgress": "in_progress", "Stopping": "cancelling", "Stopped": "cancelled",
            "Completed": "completed", "PartiallyCompleted": "completed", "Failed": "failed",
            "Expired": "expired"}
NOT_RUN = {"cancelled": ("batch_cancelled", "The batch was cancelled before this request "
                         "was run."),
           "expired": ("batch_expired", "This request could not be executed before the "
                       "completion window expired.")}



def _refused(number: int | None, message: str) -> GatewayError:
    where = f"line {number}: " if number is not None else ""
    return GatewayError(400, where + message, code="invalid_value", param="input_file_id")


class Place:
    """Where a provider's batch jobs and their files live, and how requests there are signed."""

    def __init__(self, provider: Provider):
        settings = provider.spec.options.get("bedrock_batch") or {}
        self.provider = provider
        self.region = str(region_of(provider.spec.options) or "us-east-1")
        self.role_arn = str(settings.get("role_arn") or "")
        uri = str(settings.get("s3_uri") or "")
        self.bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        self.prefix = prefix.strip("/")
        self.control = str(settings.get("endpoint")
                           or f"https://bedrock.{self.region}.amazonaws.com").rstrip("/")
        s3 = settings.get("s3_endpoint")
        self.s3 = (f"{str(s3).rstrip('/')}/{self.bucket}" if s3
                   else f"https://{self.bucket}.s3.{self.region}.amazonaws.com")

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def object_url(self, key: str) -> yarl.URL:
        return yarl.URL(f"{self.s3}/{key}", encoded=True)

    def job_url(self, job_arn: str = "", action: str = "") -> yarl.URL:
        if job_arn and not JOB_ARN.fullmatch(job_arn):
            raise GatewayError(502, f"provider '{self.provider.name}' named a batch job the "
                               f"gateway will not ask for: {job_arn[:200]!r}",
                               type="server_error", code="bad_upstream")
        path = "/model-invocation-job" + (f"/{quote(job_arn, safe='')}" if job_arn else "")
        return yarl.URL(self.control + path + (f"/{action}" if action else ""), encoded=True)

    def signed(self, method: str, url: yarl.URL, service: str, body: bytes = b"",
               headers: Mapping[str, str] | None = None,
               payload_hash: str | None = None) -> dict[str, str]:
        creds = Credentials.resolve(self.provider.spec.options)
        if creds is None:
            raise GatewayError(401, f"provider '{self.provider.name}' has no AWS credentials",
                               type="authentication_error", code="missing_credentials")
        host = url.host or ""
        if not url.is_default_port():
            host = f"{host}:{url.port}"
        return sign(method, host, url.raw_path, url.raw_query_string, dict(headers or {}), body,
                    creds, self.region, service, payload_hash=payload_hash)

    async def control_call(self, method: str, url: yarl.URL,
                           body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        data = orjson.dumps(body) if body is not None else b""
        headers = self.signed(method, url, "bedrock", data,
                              {"Content-Type": "application/json"} if body is not None else {})
        if body is None:
            return await call_url(self.provider, method, url, headers)
        return await call_url(self.provider, method, url, headers, data=data)


class BedrockBatches(NativeBatchAPI):
    endpoints = frozenset({"/v1/chat/completions"})

    async def submit(self, provider: Provider, models: Mapping[str, str],
                     record: Mapping[str, Any], endpoint: str, completion_window: str,
                     metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        place = Place(provider)
        (model, *others) = set(models.values())
        if others:
            raise _refused(None, "a Bedrock batch job runs one model: this file's routes reach "
                           f"{len(others) + 1} models of provider '{provider.name}'")
        if "anthropic." not in model:
            raise _refused(None, f"the gateway runs Bedrock batch jobs for Anthropic Claude "
                           f"models only, not {model}: give the route a provider without "
                           "batch: native to have the gateway run the lines")
        count, size = 0, 0
        async for line in self._records(provider, record):
            count += 1
            size += len(line)
            if count > MAX_RECORDS or size > MAX_BYTES:
                raise GatewayError(400, f"a Bedrock batch job takes at most {MAX_RECORDS} "
                                   f"records and {MAX_BYTES} bytes: this file is larger",
                                   code="batch_too_large", param="input_file_id")
        if count < MIN_RECORDS:
            raise GatewayError(400, f"a Bedrock batch job needs at least {MIN_RECORDS} "
                               f"records: this file has {count}", code="batch_too_small",
                               param="input_file_id")
        token = "gw" + secrets.token_hex(10)
        input_key = place.key(token, INPUT)
        url = place.object_url(input_key)
        headers = place.signed("PUT", url, "s3", headers={
            "Content-Type": "application/jsonl", "Content-Length": str(size),
            "x-amz-content-sha256": UNSIGNED}, payload_hash=UNSIGNED)
        await call_url(provider, "PUT", url, headers, answer_json=False,
                       data=self._records(provider, record))
        job = {"jobName": f"gateway-{token}", "roleArn": place.role_arn, "modelId": model,
               "clientRequestToken": token,
               "inputDataConfig": {"s3InputDataConfig": {
                   "s3Uri": place.uri(input_key), "s3InputFormat": "JSONL"}},
               "outputDataConfig": {"s3OutputDataConfig": {
                   "s3Uri": place.uri(place.key(token, "output")) + "/"}}}
        created = await place.control_call("POST", place.job_url(), job)
        job_arn = created.get("jobArn")
        if not isinstance(job_arn, str) or not JOB_ARN.fullmatch(job_arn):
            raise GatewayError(502, f"provider '{provider.name}' answered a batch job without "
                               "a jobArn like Bedrock's", type="server_error", code="bad_upstream")
        return {"id": job_arn, "status": "Submitted"}

    async def _records(self, provider: Provider,
                       record: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """Each line as one record of the job's input, encoded with its newline."""
        max_tokens = int(provider.spec.options.get("default_max_tokens") or DEFAULT_MAX_TOKENS)
        async for number, line in self.store.lines(record):
            body = orjson.loads(line)["body"]
            try:
                params = to_anthropic(body, default_max_tokens=max_tokens).body
            except TranslationError as err:
                raise _refused(number, f"bedrock: {err.message}") from None
            params.pop("model", None)
            params.pop("metadata", None)  # not a field of Claude's InvokeModel body
            params["anthropic_version"] = ANTHROPIC_VERSION
            yield orjson.dumps({"recordId": f"{number:011d}", "modelInput": params}) + b"\n"

    async def refresh(self, provider: Provider, batch_id: str) -> dict[str, Any]:
        place = Place(provider)
        return {**await place.control_call("GET", place.job_url(batch_id)), "id": batch_id}

    async def cancel(self, provider: Provider, batch_id: str) -> dict[str, Any]:
        place = Place(provider)
        url = place.job_url(batch_id, "stop")
        await call_url(provider, "POST", url, place.signed("POST", url, "bedrock"),
                       answer_json=False)
        return await self.refresh(provider, batch_id)

    def provider_files(self, batch: Mapping[str, Any]) -> list[str]:
        """The job's objects in S3: its input, its output and Bedrock's manifest."""
        source = ((batch.get("inputDataConfig") or {}).get("s3InputDataConfig") or {}).get("s3Uri")
        output = _output(batch)
        uris = [source] if isinstance(source, str) else []
        if output is not None:
            uris += [f"{output}/{INPUT}.out", f"{output}/manifest.json.out"]
        return uris

    async def delete_file(self, provider: Provider, file_id: str) -> None:
        """Delete an object of the configured bucket (one already gone counts as deleted)."""
        place = Place(provider)
        prefix = f"s3://{place.bucket}/"
        if not file_id.startswith(prefix):
            raise GatewayError(400, f"{file_id} is not in the configured bucket {place.bucket}",
                               code="output_refused")
        url = place.object_url(file_id.removeprefix(prefix))
        headers = place.signed("DELETE", url, "s3",
                               headers={"x-amz-content-sha256": sha256_hex(b"")})
        try:
            await call_url(provider, "DELETE", url, headers, answer_json=False)
        except GatewayError as err:
            if err.status != 404:
                raise

    def mapped(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        status = STATUSES.get(str(batch.get("status")), "in_progress")
        values: dict[str, Any] = {"status": status}
        times = {"in_progress_at": unix_time(batch.get("submitTime")),
                 "expires_at": unix_time(batch.get("jobExpirationTime"))}
        if status in ENDED:
            times[f"{status}_at"] = unix_time(batch.get("endTime"))
        values.update((k, v) for k, v in times.items() if v is not None)
        if status == "failed" and batch.get("message"):
            values["errors"] = orjson.dumps({"object": "list", "data": [{
                "code": "batch_job_failed", "message": str(batch["message"]), "param": None,
                "line": None}]}).decode()
        return values

    async def collect(self, provider: Provider, batch: Mapping[str, Any], owner: Owner,
                      record: Mapping[str, Any] | None = None) -> dict[str, Any]:
        place = Place(provider)
        status = self.mapped(batch)["status"]
        output = _output(batch)
        prefix = f"s3://{place.bucket}/"
        if output is None or not output.startswith(prefix):
            raise BatchFailed(502, f"provider '{provider.name}' names an output outside the "
                              f"configured bucket {place.bucket}", type="server_error",
                              code="output_refused")
        key = f"{output.removeprefix(prefix)}/{INPUT}.out"
        ids: dict[str, str] = {}  # recordId -> custom_id (of the lines not answered yet)
        tools: dict[str, str] = {}
        if record is not None:
            async for number, line in self.store.lines(record):
                data = orjson.loads(line)
                ids[f"{number:011d}"] = data["custom_id"]
                if b"json_schema" in line:
                    try:
                        tool = to_anthropic(data["body"]).json_tool
                    except TranslationError:
                        tool = None
                    if tool is not None:
                        tools[data["custom_id"]] = tool
        files = ResultFiles(self.store, owner, batch["id"].rsplit("/", 1)[-1])
        counts = {True: 0, False: 0}
        try:
            if status != "failed":
                url = place.object_url(key)
                headers = place.signed("GET", url, "s3",
                                       headers={"x-amz-content-sha256": sha256_hex(b"")})
                async for raw in jsonl_lines(get_stream(provider, url, headers)):
                    ok, result = _result(raw, ids, tools)
                    files.write(ok, result)
                    counts[ok] += 1
            code, message = NOT_RUN.get(status, ("batch_not_run", "The batch job ended "
                                                 "before this request was run."))
            for custom_id in ids.values():
                files.write(False, output_line(custom_id, None, None,
                                               error={"code": code, "message": message}))
                counts[False] += 1
            return {**await files.commit(), "completed": counts[True],
                    "failed": counts[False], "total": counts[True] + counts[False]}
        except BaseException:
            files.abort()
            raise


def _output(job: Mapping[str, Any]) -> str | None:
    """Where the job's output objects are: ``<its output s3Uri>/<job id>``."""
    uri = ((job.get("outputDataConfig") or {}).get("s3OutputDataConfig") or {}).get("s3Uri")
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        return None
    return f"{uri.rstrip('/')}/{str(job['id']).rsplit('/', 1)[-1]}"


def _result(raw: bytes, ids: dict[str, str],
            tools: Mapping[str, str]) -> tuple[bool, dict[str, Any]]:
    """One line of a job's output as (answered, a line of OpenAI's batch output); its record
    is taken out of ``ids``."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return False, output_line(None, None, None, error={
            "code": "bad_upstream", "message": "the provider sent an output line that is not "
            "a JSON object"})
    record_id = str(data.get("recordId"))
    custom_id = ids.pop(record_id, record_id)
    message = data.get("modelOutput")
    if isinstance(message, dict) and not data.get("error"):
        completion = from_anthropic(message, tools.get(custom_id))
        return True, output_line(custom_id, 200, completion, str(message.get("id") or ""))
    error = data.get("error")
    error = error if isinstance(error, dict) else {}
    status = error.get("errorCode")
    status = status if isinstance(status, int) and 400 <= status < 600 else 500
    text = str(error.get("errorMessage") or f"status {status}")
    body = {"error": {"message": text, "type": "invalid_request_error" if status < 500
                      else "api_error", "code": str(status), "param": None}}
    return False, output_line(custom_id, status, body, error={"code": str(status),
                                                               "message": text})
