"""Provider-native batches on Amazon Bedrock batch inference (gateway/files/native_bedrock.py),
through /v1/batches with the official openai client, against a fake Bedrock control plane and
S3 bucket that check SigV4 as AWS does: the input written to S3 as Claude InvokeModel records,
the job created with the configured role and the target's model, its status mapped, its output
object translated back into OpenAI's batch output format, a stop passed on, and what Bedrock
would refuse refused first."""

from __future__ import annotations

import json

import openai
import pytest

from gateway.config.compiler import Runtime, compile_bytes
from gateway.errors import ConfigErrors, GatewayError
from gateway.files.native_bedrock import BedrockBatches

from ..fake_bedrock_batch import ACCESS_KEY, REGION, ROLE, SECRET_KEY, FakeBedrockBatch
from .test_anthropic_batches import SCHEMA, create, jsonl
from .test_native_batches import wait_for

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
CONFIG = """
version: 1
providers:
  aws:
    type: bedrock
    region: {region}
    base_url: "{url}"
    aws_access_key_id: {access}
    aws_secret_access_key: "{secret}"
    batch: native
    bedrock_batch: {{s3_uri: "s3://batch-bucket/gw/jobs", role_arn: "{role}", endpoint: "{url}",
                    s3_endpoint: "{url}"}}
routes:
  claude: {{target: {{provider: aws, model: "{model}"}}}}
  llama: {{target: {{provider: aws, model: meta.llama3-70b-instruct-v1:0}}}}
server: {{data_dir: "{data_dir}"}}
batches: {{native_poll: 50ms}}
"""


@pytest.fixture
def fake():
    with FakeBedrockBatch() as api:
        yield api


def config_text(url: str, tmp_path) -> str:
    return CONFIG.format(region=REGION, url=url, access=ACCESS_KEY, secret=SECRET_KEY,
                         role=ROLE, model=MODEL, data_dir=tmp_path / "data")


def config(fake, tmp_path) -> str:
    return config_text(fake.url, tmp_path)


def lines(count: int, route: str = "claude", special: dict[int, dict] | None = None) -> bytes:
    out = []
    for n in range(count):
        text = "please fail" if n == 1 else f"hi {n}"
        body = {"model": route, "messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": text}],
                **(special or {}).get(n, {})}
        out.append(json.dumps({"custom_id": f"req {n}", "method": "POST",
                               "url": "/v1/chat/completions", "body": body}).encode() + b"\n")
    return b"".join(out)



def test_a_batch_runs_as_a_bedrock_batch_job(gateway_app, tmp_path, fake):
    """The lines go to S3 as InvokeModel records (Claude's body, no model, recordId the line
    number) and a job is created for the target's model with the configured role; once it
    completed, its output object comes back as chat.completions, its errors in the error
    file, every line under its own custom_id; then its objects are deleted from S3 and its
    usage counted."""
    gw = gateway_app(config(fake, tmp_path))
    client = gw.openai()
    batch = create(client, lines(100, special={2: {"response_format": SCHEMA}}))
    (arn,) = fake.jobs
    job = fake.jobs[arn]
    assert batch.status == "validating" and batch.request_counts.total == 100
    assert job["modelId"] == MODEL and job["roleArn"] == ROLE
    source = job["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
    assert source.startswith("s3://batch-bucket/gw/jobs/")
    records = [json.loads(x) for x in fake.object(source).splitlines()]
    assert [r["recordId"] for r in records[:2]] == ["00000000001", "00000000002"]
    first = records[0]["modelInput"]
    assert first["system"] == "Be brief." and first["messages"] == [
        {"role": "user", "content": "hi 0"}]
    assert records[2]["modelInput"]["tool_choice"] == {"type": "tool", "name": "reply"}
    assert job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].startswith(
        "s3://batch-bucket/gw/jobs/")

    job["status"] = "InProgress"
    wait_for(lambda: client.batches.retrieve(batch.id).status == "in_progress", "in progress")
    fake.finish(arn)
    done = wait_for(lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b,
                    "the batch to complete")
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (100, 99, 1)
    assert done.completed_at - done.in_progress_at == 7200
    output = jsonl(client, done.output_file_id)
    assert len(output) == 99 and "req 1" not in output
    answer = output["req 0"]["response"]
    assert answer["status_code"] == 200 and answer["body"]["object"] == "chat.completion"
    assert answer["body"]["choices"][0]["message"]["content"] == "answer 00000000001"
    assert answer["body"]["usage"]["prompt_tokens"] == 12
    schema = output["req 2"]["response"]["body"]["choices"][0]["message"]["content"]
    assert json.loads(schema) == {"answer": "00000000003"}
    failed = jsonl(client, done.error_file_id)["req 1"]
    assert failed["response"]["status_code"] == 400
    assert failed["error"] == {"code": "400", "message": "refused by the fake"}
    wait_for(lambda: not fake.objects, "the job's objects deleted from S3")
    (usage,) = wait_for(lambda: gw.get("/admin/usage?period=all").json()["usage"],
                        "the batch's usage")
    assert (usage["route"], usage["target"], usage["requests"], usage["prompt_tokens"],
            usage["completion_tokens"]) == ("claude", f"aws/{MODEL}", 99, 99 * 12, 99 * 3)


def test_a_cancel_stops_the_job(gateway_app, tmp_path, fake):
    """A cancel is StopModelInvocationJob; once stopped, the record that ran is in the output
    file and every other line in the error file as batch_cancelled."""
    client = gateway_app(config(fake, tmp_path)).openai()
    batch = create(client, lines(100))
    (arn,) = fake.jobs
    assert client.batches.cancel(batch.id).status == "cancelling"
    wait_for(lambda: fake.jobs[arn]["status"] == "Stopping", "the stop at Bedrock")
    fake.finish(arn)
    done = wait_for(lambda: (b := client.batches.retrieve(batch.id)).status == "cancelled" and b,
                    "the batch to be cancelled")
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 99)
    assert set(jsonl(client, done.output_file_id)) == {"req 0"}
    errors = jsonl(client, done.error_file_id)
    assert len(errors) == 99 and errors["req 5"]["error"]["code"] == "batch_cancelled"


@pytest.mark.parametrize("content, message", [
    (lines(99), "at least 100 records: this file has 99"),
    (lines(100, special={7: {"n": 2}}), "line 8: bedrock: anthropic returns one choice"),
    (lines(100, route="llama"), "Anthropic Claude models only"),
])
def test_what_bedrock_would_refuse_is_refused_first(gateway_app, tmp_path, fake, content,
                                                    message):
    """Too few records, a line the translation refuses, a model that is not Claude: 400 at
    POST /v1/batches, and nothing is sent to S3 or Bedrock."""
    client = gateway_app(config(fake, tmp_path)).openai()
    with pytest.raises(openai.BadRequestError) as caught:
        create(client, content)
    assert message in str(caught.value)
    assert fake.seen == []


async def test_a_job_arn_unlike_bedrocks_is_not_put_in_a_path(tmp_path):
    """An ARN that is not Bedrock's shape (a path in it, another resource) is refused before
    any request: nothing signed goes to another path of the control plane."""
    runtime = Runtime()
    graph = compile_bytes(config_text("http://127.0.0.1:9", tmp_path).encode(),
                          str(tmp_path / "gateway.yaml"), runtime=runtime)
    provider = graph.routes["claude"].node.provider
    for arn in ("arn:aws:bedrock:us-west-2:123456789012:model-invocation-job/../../x",
                "arn:aws:bedrock:us-west-2:123456789012:custom-model/abcdefghijkl"):
        with pytest.raises(GatewayError) as caught:
            await BedrockBatches(None).refresh(provider, arn)  # type: ignore[arg-type]
        assert caught.value.code == "bad_upstream"
    await runtime.clients.close()


def test_batch_native_on_bedrock_needs_its_s3_place(tmp_path):
    """batch: native on bedrock without bedrock_batch is a config error naming what it needs."""
    text = ("version: 1\nproviders:\n  aws: {type: bedrock, region: us-east-1, batch: native}\n"
            "routes:\n  r: {target: {provider: aws, model: m}}\n")
    with pytest.raises(ConfigErrors) as caught:
        compile_bytes(text.encode(), str(tmp_path / "gateway.yaml"))
    assert "bedrock_batch: {s3_uri, role_arn}" in str(caught.value)


@pytest.mark.parametrize("job, expected", [
    ({"status": "Submitted"}, {"status": "validating"}),
    ({"status": "InProgress", "submitTime": "2026-01-01T00:00:00Z",
      "jobExpirationTime": "2026-01-02T00:00:00Z"},
     {"status": "in_progress", "in_progress_at": 1767225600, "expires_at": 1767312000}),
    ({"status": "Stopping"}, {"status": "cancelling"}),
    ({"status": "PartiallyCompleted", "endTime": "2026-01-01T00:00:10Z"},
     {"status": "completed", "completed_at": 1767225610}),
    ({"status": "Expired"}, {"status": "expired"}),
    ({"status": "Failed", "message": "role cannot read the bucket"},
     {"status": "failed", "errors": json.dumps({"object": "list", "data": [{
         "code": "batch_job_failed", "message": "role cannot read the bucket", "param": None,
         "line": None}]}, separators=(",", ":"))}),
])
def test_job_status_maps_to_openais(job, expected):
    """Bedrock's job statuses and times as OpenAI's batch status and timestamps."""
    assert BedrockBatches(None).mapped(job) == expected  # type: ignore[arg-type]
