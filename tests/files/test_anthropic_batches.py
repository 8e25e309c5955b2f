"""Provider-native batches on Anthropic's Message Batches (gateway/files/native_anthropic.py),
through /v1/batches with the official openai client, against a fake Message Batches API that
checks requests as the real one does: each line translated to a Messages request with the
target's model, status and counts mapped, results translated back into OpenAI's batch output
format, cancel passed on, the batch deleted at Anthropic once copied, Anthropic's limits
refused before anything is sent, and a results_url off the provider's host never sent the
key."""

from __future__ import annotations

import json

import openai
import pytest

from gateway.files import native_anthropic
from gateway.files.native_anthropic import AnthropicBatches

from ..fake_message_batches import KEY, VERSION, FakeMessageBatches
from .test_native_batches import wait_for

CONFIG = """
version: 1
providers:
  claude: {{type: anthropic, base_url: "{base_url}", api_key: {key}, batch: native}}
routes:
  sonnet: {{target: {{provider: claude, model: claude-sonnet-4-5}}}}
server: {{data_dir: "{data_dir}"}}
batches: {{native_poll: 50ms}}
"""
SCHEMA = {"type": "json_schema", "json_schema": {"name": "reply", "schema": {
    "type": "object", "properties": {"answer": {"type": "string"}}}}}


@pytest.fixture
def fake():
    with FakeMessageBatches() as api:
        yield api


def line(custom_id: str, **extra) -> bytes:
    body = {"model": "sonnet", "messages": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": f"hi {custom_id}"}],
            **extra}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": body}).encode() + b"\n"


def start(gateway_app, tmp_path, fake):
    return gateway_app(CONFIG.format(base_url=fake.base_url, key=KEY,
                                     data_dir=tmp_path / "data")).openai()


def create(client, content: bytes):
    uploaded = client.files.create(file=("in.jsonl", content), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h")


def jsonl(client, file_id: str) -> dict[str, dict]:
    rows = [json.loads(x) for x in client.files.content(file_id).read().splitlines()]
    return {row["custom_id"]: row for row in rows}


def test_a_batch_runs_on_message_batches(gateway_app, tmp_path, fake):
    """The lines go to POST /v1/messages/batches as Messages requests (the target's model,
    system prompt lifted, max_tokens filled in, a json_schema as a forced tool) with the key
    and anthropic-version; the batch follows Anthropic's status and counts; its results come
    back as chat.completions in the output file and the errored line in the error file; then
    the batch is deleted at Anthropic and its usage counted (the succeeded lines)."""
    gw = gateway_app(CONFIG.format(base_url=fake.base_url, key=KEY, data_dir=tmp_path / "data"))
    client = gw.openai()
    batch = create(client, line("one") + line("fail-two") + line("three",
                                                                  response_format=SCHEMA))
    (batch_id,) = fake.batches
    assert batch.status == "in_progress" and batch.request_counts.total == 3
    method, path, headers = fake.seen[0]
    assert (method, path, headers["x-api-key"], headers["anthropic-version"]) == (
        "POST", "/v1/messages/batches", KEY, VERSION)
    sent = {r["custom_id"]: r["params"] for r in fake.requests[batch_id]}
    assert sent["one"]["model"] == "claude-sonnet-4-5" and sent["one"]["system"] == "Be brief."
    assert sent["one"]["messages"] == [{"role": "user", "content": "hi one"}]
    assert sent["one"]["max_tokens"] > 0
    assert sent["three"]["tool_choice"] == {"type": "tool", "name": "reply"}
    assert client.batches.retrieve(batch.id).status == "in_progress"

    fake.finish(batch_id)
    done = wait_for(lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b,
                    "the batch to complete")
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (3, 2, 1)
    assert done.completed_at == done.in_progress_at + 3600
    output = jsonl(client, done.output_file_id)
    assert set(output) == {"one", "three"}
    first = output["one"]["response"]
    assert first["status_code"] == 200 and output["one"]["error"] is None
    assert first["body"]["object"] == "chat.completion"
    assert first["body"]["model"] == "claude-sonnet-4-5"
    assert first["body"]["choices"][0]["message"]["content"] == "answer one"
    assert first["body"]["usage"]["prompt_tokens"] == 10
    assert first["body"]["usage"]["completion_tokens"] == 5
    three = output["three"]["response"]["body"]["choices"][0]
    assert json.loads(three["message"]["content"]) == {"answer": "three"}
    assert three["finish_reason"] == "stop"
    failed = jsonl(client, done.error_file_id)["fail-two"]
    assert failed["response"]["status_code"] == 400
    assert failed["error"] == {"code": "invalid_request_error",
                               "message": "refused by the fake"}
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    wait_for(lambda: batch_id not in fake.batches, "the batch deleted at Anthropic")
    (usage,) = wait_for(lambda: gw.get("/admin/usage?period=all").json()["usage"],
                        "the batch's usage")
    assert (usage["route"], usage["target"], usage["requests"], usage["prompt_tokens"],
            usage["completion_tokens"]) == ("sonnet", "claude/claude-sonnet-4-5", 2, 20, 10)
    assert ("DELETE", f"/v1/messages/batches/{batch_id}") in [m[:2] for m in fake.seen]


def test_cancel_is_passed_on(gateway_app, tmp_path, fake):
    """A cancel goes to POST .../cancel; once Anthropic ends the batch the gateway's is
    cancelled, what ran in the output file, the canceled requests in the error file."""
    client = start(gateway_app, tmp_path, fake)
    batch = create(client, line("one") + line("two") + line("three"))
    (batch_id,) = fake.batches
    assert client.batches.cancel(batch.id).status == "cancelling"
    wait_for(lambda: fake.batches[batch_id]["processing_status"] == "canceling",
             "the cancel at Anthropic")
    fake.finish(batch_id)
    done = wait_for(lambda: (b := client.batches.retrieve(batch.id)).status == "cancelled" and b,
                    "the batch to be cancelled")
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 2)
    assert done.cancelling_at is not None and done.cancelled_at is not None
    assert set(jsonl(client, done.output_file_id)) == {"one"}
    errors = jsonl(client, done.error_file_id)
    assert set(errors) == {"two", "three"}
    assert errors["two"]["response"] is None
    assert errors["two"]["error"]["code"] == "batch_cancelled"


def test_results_url_on_another_host_is_refused(gateway_app, tmp_path, fake):
    """A results_url that is not on the provider's configured host is not fetched: the key is
    sent nowhere, and the batch fails saying why."""
    with FakeMessageBatches() as elsewhere:
        client = start(gateway_app, tmp_path, fake)
        batch = create(client, line("one"))
        (batch_id,) = fake.batches
        fake.results_base = elsewhere.base_url
        fake.finish(batch_id)
        done = wait_for(lambda: (b := client.batches.retrieve(batch.id)).status == "failed"
                        and b, "the batch to fail")
        assert elsewhere.seen == []
        assert not any(path.endswith("/results") for _, path, _ in fake.seen)
        (error,) = done.errors.data
        assert error.code == "results_url_refused"
        assert "not the host of its base_url" in error.message and KEY not in error.message
        assert done.output_file_id is None and done.error_file_id is None


def test_any_custom_id_openai_takes_runs(gateway_app, tmp_path, fake):
    """custom_ids Anthropic refuses (dots, colons, spaces, unicode, over 64 characters) go
    to Anthropic as gw-line-<line number>, as does one of the file's own starting with
    gw-line- (no two lines share one); ids Anthropic takes go as they are. The output file
    has every line under its own custom_id, the json_schema answer of a renamed line
    included; its usage is counted."""
    gw = gateway_app(CONFIG.format(base_url=fake.base_url, key=KEY, data_dir=tmp_path / "data"))
    client = gw.openai()
    own = ["doc.1", "urn:item:2", "has space", "café ☕", "x" * 65, "gw-line-1", "plain_ok-3"]
    content = b"".join(line(c) for c in own[:-1]) + line(own[-1], response_format=SCHEMA)
    batch = create(client, content)
    (batch_id,) = fake.batches
    sent = [r["custom_id"] for r in fake.requests[batch_id]]
    assert sent == [f"gw-line-{n}" for n in range(1, 7)] + ["plain_ok-3"]
    renamed = create(client, line("fail.me") + line("ok.json", response_format=SCHEMA))
    fake.finish(batch_id)
    done = wait_for(lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b,
                    "the batch to complete")
    output = jsonl(client, done.output_file_id)
    assert set(output) == set(own)
    for n, custom_id in enumerate(own[:-1], 1):  # the fake answers with the id it got
        message = output[custom_id]["response"]["body"]["choices"][0]["message"]
        assert message["content"] == f"answer gw-line-{n}"
    plain = output["plain_ok-3"]["response"]["body"]["choices"][0]["message"]
    assert json.loads(plain["content"]) == {"answer": "plain_ok-3"}
    second = next(b for b in fake.batches if b != batch_id)
    fake.finish(second)
    other = wait_for(lambda: (b := client.batches.retrieve(renamed.id)).status == "completed"
                     and b, "the second batch to complete")
    answer = jsonl(client, other.output_file_id)["ok.json"]["response"]["body"]["choices"][0]
    assert json.loads(answer["message"]["content"]) == {"answer": "gw-line-2"}  # via its tool
    assert set(jsonl(client, other.output_file_id)) == {"fail.me", "ok.json"}
    wait_for(lambda: sum(u["requests"] for u in gw.get("/admin/usage?period=all").json()[
        "usage"]) == 9, "the usage of both batches")


@pytest.mark.parametrize("limit, content, message", [
    ("MAX_REQUESTS", line("a") + line("b") + line("c"), "at most 2 requests"),
    ("MAX_BYTES", line("a") + line("b") + line("c"), "bytes of requests"),
    (None, line("a") + line("b", n=2), "line 2: anthropic: anthropic returns one choice"),
])
def test_what_anthropic_would_refuse_is_refused_first(gateway_app, tmp_path, fake, monkeypatch,
                                                      limit, content, message):
    """Over Anthropic's request count or size, a line the translation refuses: 400 at POST
    /v1/batches, with the line, and nothing sent."""
    if limit is not None:
        monkeypatch.setattr(native_anthropic, limit, 2 if limit == "MAX_REQUESTS" else 300)
    client = start(gateway_app, tmp_path, fake)
    with pytest.raises(openai.BadRequestError) as caught:
        create(client, content)
    assert message in str(caught.value)
    assert fake.seen == [] and client.batches.list().data == []


@pytest.mark.parametrize("batch, expected", [
    ({"processing_status": "in_progress", "request_counts": {"processing": 4}},
     {"status": "in_progress", "total": 4, "completed": 0, "failed": 0}),
    ({"processing_status": "canceling", "cancel_initiated_at": "2026-01-01T00:00:10Z",
      "request_counts": {"processing": 1, "succeeded": 1}},
     {"status": "cancelling", "total": 2, "completed": 1, "failed": 0,
      "cancelling_at": 1767225610}),
    ({"processing_status": "ended", "ended_at": "2026-01-01T00:00:20.5Z",
      "request_counts": {"succeeded": 3, "errored": 1, "expired": 2}},
     {"status": "expired", "total": 6, "completed": 3, "failed": 3,
      "expired_at": 1767225620}),
    ({"processing_status": "ended", "request_counts": {"succeeded": 2, "errored": "x"}},
     {"status": "completed", "total": 2, "completed": 2, "failed": 0}),
    ({"processing_status": "archived?", "request_counts": None},
     {"status": "in_progress", "total": 0, "completed": 0, "failed": 0}),
])
def test_status_and_counts_map_to_openais(tmp_path, batch, expected):
    """processing_status and request_counts as OpenAI's status, counts and timestamps: ended
    is cancelled after a cancel, expired when requests expired, else completed; odd values are
    read as in progress or zero."""
    assert AnthropicBatches(None).mapped(batch) == expected  # type: ignore[arg-type]


def test_every_type_the_config_allows_has_an_adapter(tmp_path):
    """batch: native is accepted for exactly the provider types that have a batch adapter."""
    from gateway.config.compiler import NATIVE_BATCH_TYPES
    from gateway.files.native_batches import NativeBatches

    assert set(NativeBatches(None).apis) == set(NATIVE_BATCH_TYPES)  # type: ignore[arg-type]


async def test_results_are_read_line_by_line():
    """Lines split across chunks come whole, blank ones skipped, the last without a newline
    kept; a line over the limit fails the batch (asking again would not help)."""
    from gateway.files.native_base import BatchFailed, jsonl_lines

    async def chunks(*parts: bytes):
        for part in parts:
            yield part

    got = [x async for x in jsonl_lines(chunks(b'{"a":', b'1}\n\n{"b"', b":2}\n", b"{}"))]
    assert got == [b'{"a":1}', b'{"b":2}', b"{}"]
    with pytest.raises(BatchFailed):
        [x async for x in jsonl_lines(chunks(b"x" * 50, b"y" * 50), limit=64)]
