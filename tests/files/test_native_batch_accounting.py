"""Provider-native batches are counted like live traffic and leave nothing behind: their usage
(read from the provider's output file as it is copied in) in /admin/usage, the budget, the
request log and /metrics; a key over its budget refused at create; the provider's copies of
the files deleted (DELETE calls counted at the fake OpenAI Batch API), kept on request, retried
when the provider refuses."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import time

import openai
import pytest

from ..fake_batches import KEY, USAGE, FakeBatchAPI
from ..inprocess_gateway import poll

RICH, TIGHT = "sk-rich-batch-key", "sk-tight-batch-key"
CAPPED, PENNIES = "sk-capped-batch-key", "sk-pennies-batch-key"
CONFIG = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  oa: {{type: openai, base_url: "{base_url}", api_key: {key}, batch: native}}
pricing:
  "oa/gpt-4o-mini": {{input: 1000, output: 2000}}   # $0.2 a line at USAGE, $0.1 at the batch price
routes:
  gpt: {{target: {{provider: oa, model: gpt-4o-mini}}}}
keys:
  rich: {{key_sha256: {rich}, budget: {{usd: 100}}}}
  tight: {{key_sha256: {tight}, budget: {{usd: 0.22}}}}
  capped: {{key_sha256: {capped}, limits: {{requests_per_minute: 3}}}}
  pennies: {{key_sha256: {pennies}, limits: {{usd_per_day: 0.01}}}}
batches: {{native_poll: 100ms{extra}}}
"""
LINE_USD = (USAGE["prompt_tokens"] * 1000 + USAGE["completion_tokens"] * 2000) / 1e6 * 0.5


@pytest.fixture
def fake():
    with FakeBatchAPI() as api:
        yield api


def start(gateway_app, tmp_path, fake, extra: str = ""):
    return gateway_app(CONFIG.format(
        data=tmp_path / "data", base_url=fake.base_url, key=KEY, extra=extra,
        rich=digest(RICH), tight=digest(TIGHT), capped=digest(CAPPED), pennies=digest(PENNIES)))


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def lines(*custom_ids: str) -> bytes:
    return b"".join(json.dumps({
        "custom_id": c, "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "gpt", "max_tokens": 10,
                 "messages": [{"role": "user", "content": "hi"}]}}).encode() + b"\n"
        for c in custom_ids)


def run_batch(client, fake, *custom_ids: str):
    """A native batch of these lines, finished at the fake; the gateway batch once ended."""
    uploaded = client.files.create(file=("in.jsonl", lines(*custom_ids)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    (remote,) = set(fake.batches) - {b for b, v in fake.batches.items() if v.get("seen")}
    fake.batches[remote]["seen"] = True
    fake.finish(remote)
    done = poll(lambda: client.batches.retrieve(batch.id), lambda b: b.status == "completed",
                10, "the native batch did not complete", every=0.05)
    return done, remote


def test_native_batch_usage_counted_like_requests(gateway_app, tmp_path, fake):
    """The usage each output line reports is in /admin/usage for the key, route and target
    (failed lines not counted, as failed requests are not), costed at half the price; each
    line is in the request log (request id <batch>-<custom_id>) and /metrics."""
    gw = start(gateway_app, tmp_path, fake)
    done, _ = run_batch(gw.openai(RICH), fake, "one", "fail-two", "three")
    rows = poll(lambda: gw.get("/admin/usage?period=all").json()["usage"],
                lambda r: r, 10, "no usage written", every=0.1)
    assert rows == [{"key": "rich", "route": "gpt", "target": "oa/gpt-4o-mini", "requests": 2,
                     "prompt_tokens": 200, "completion_tokens": 100,
                     "cost_usd": round(2 * LINE_USD, 6), "estimated_requests": 0}]
    logged = poll(lambda: gw.get(f"/admin/logs/{done.id}-one"), lambda r: r.status_code == 200,
                  10, "the line is not in the request log", every=0.1).json()
    assert (logged["route"], logged["target"], logged["status"]) == ("gpt", "oa/gpt-4o-mini",
                                                                     200)
    assert logged["tokens_in"] == 100 and logged["cost_usd"] == pytest.approx(LINE_USD)
    failed = poll(lambda: gw.get(f"/admin/logs/{done.id}-fail-two"),
                  lambda r: r.status_code == 200, 10, "the failed line is not logged").json()
    assert failed["status"] >= 400 and failed["error"] == "refused by the fake"
    metrics = gw.get("/metrics").text.splitlines()
    assert any(m.startswith("gateway_cost_usd_total{") and 'route="gpt"' in m for m in metrics)
    assert any(m.startswith("gateway_requests_total{") and 'route="gpt"' in m for m in metrics)
    # No latency of their own: nothing observed in the duration histogram.
    assert [m.rsplit(" ", 1)[1] for m in metrics
            if m.startswith("gateway_request_duration_seconds_count{") and 'route="gpt"' in m
            ] == ["0.0"]


def test_stats_leave_native_lines_out_of_latency(gateway_app, tmp_path, fake):
    """/admin/stats: a native batch's lines count as requests (and errors) but not in the
    latency percentiles, which are those of the requests the gateway sent (here one of
    40 ms: with the batch's three 0 ms lines p50 would be 0)."""
    from gateway.store import logs_db
    from gateway.store.logs_writer import row

    from ..request_log.test_writer import record

    gw = start(gateway_app, tmp_path, fake)
    done, _ = run_batch(gw.openai(RICH), fake, "one", "fail-two", "three")
    poll(lambda: gw.get("/admin/logs").json()["data"], lambda r: len(r) == 3, 10,
         "the batch's lines are not logged", every=0.1)
    conn = logs_db.connect(str(tmp_path / "data" / "logs.db"))
    live = dataclasses.replace(record(time.time(), "live-one"), latency_ms=40.0)
    logs_db.insert(conn, [row(live, None)])
    conn.close()
    totals = gw.get("/admin/stats?window=1h").json()["totals"]
    assert (totals["requests"], totals["errors"]) == (4, 1)
    assert totals["p50_ms"] == totals["p95_ms"] == 40.0
    by_route = {g["name"]: g for g in gw.get("/admin/stats?window=1h&group_by=route")
                .json()["groups"]}
    assert by_route["gpt"]["requests"] == 3 and by_route["gpt"]["p50_ms"] is None


def test_budget_refuses_a_native_batch_at_create(gateway_app, tmp_path, fake):
    """The key's budget: a batch whose estimated cost fits is created; its cost is charged
    when it ends; then the next batch no longer fits and is refused with 429
    budget_exceeded, nothing sent to the provider."""
    gw = start(gateway_app, tmp_path, fake)
    client = gw.openai(TIGHT)
    run_batch(client, fake, "a", "b")  # estimated ~$0.025, then charged $0.2 of $0.22
    poll(lambda: gw.get("/admin/usage?period=all").json()["usage"], lambda r: r, 10,
         "no usage written", every=0.1)
    poll(lambda: fake.files, lambda f: f == {}, 10, "the first batch's files not deleted")
    uploaded = client.files.create(file=("in.jsonl", lines("c", "d")), purpose="batch")
    with pytest.raises(openai.RateLimitError) as refused:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    assert refused.value.code == "budget_exceeded"
    assert "estimated cost" in refused.value.message
    assert len(fake.batches) == 1 and fake.files == {}
    assert client.batches.list().data[0].status == "completed"  # no second batch recorded


def test_provider_files_deleted_once_copied(gateway_app, tmp_path, fake):
    """Once the results are in the gateway's files, the input, output and error files are
    deleted at the provider (one DELETE each); the gateway's copies stay readable."""
    gw = start(gateway_app, tmp_path, fake)
    client = gw.openai(RICH)
    done, remote = run_batch(client, fake, "one", "fail-two")
    batch = fake.batches[remote]
    expected = {batch["input_file_id"], batch["output_file_id"], batch["error_file_id"]}
    poll(lambda: set(fake.deleted), lambda d: d == expected, 10, "files not deleted")
    assert len(fake.deleted) == 3 and fake.files == {}
    assert json.loads(client.files.content(done.output_file_id).read())["custom_id"] == "one"


def test_provider_files_kept_when_asked(gateway_app, tmp_path, fake):
    """batches.keep_provider_files: true leaves them at the provider."""
    gw = start(gateway_app, tmp_path, fake, ", keep_provider_files: true")
    run_batch(gw.openai(RICH), fake, "one")
    with pytest.raises(AssertionError):
        poll(lambda: fake.deleted, bool, 0.5, "nothing deleted")
    assert len(fake.files) == 2


def test_refused_deletes_tried_again(gateway_app, tmp_path, fake):
    """A provider refusing the DELETEs (500): they are tried again at the next polls until
    every file is gone."""
    fake.fail_deletes = 4
    gw = start(gateway_app, tmp_path, fake)
    run_batch(gw.openai(RICH), fake, "one", "two")
    poll(lambda: fake.files, lambda f: f == {}, 10, "files not deleted after retries")
    assert fake.fail_deletes == 0 and len(fake.deleted) == 2


def test_deletes_refused_for_good_are_not_repeated(gateway_app, tmp_path, fake):
    """A provider answering 403 to DELETE: each file is asked once, then left there (the
    batch keeps no file to delete, so no later poll asks again)."""
    fake.fail_deletes, fake.delete_status = 10, 403
    gw = start(gateway_app, tmp_path, fake)
    done, _ = run_batch(gw.openai(RICH), fake, "one", "fail-two")
    conn = sqlite3.connect(tmp_path / "data" / "files.db")
    try:
        poll(lambda: conn.execute("SELECT provider_files FROM batches WHERE id = ?",
                                  (done.id,)).fetchone(), lambda row: row == (None,), 10,
             "the refused deletions were not given up")
    finally:
        conn.close()
    assert fake.fail_deletes == 7 and fake.deleted == [] and len(fake.files) == 3


def test_refused_batch_leaves_no_input_at_the_provider(gateway_app, tmp_path, fake):
    """The provider refusing POST /batches: the client gets its status, and the input file
    already uploaded there is deleted."""
    fake.refuse_batches = True
    gw = start(gateway_app, tmp_path, fake)
    client = gw.openai(RICH)
    uploaded = client.files.create(file=("in.jsonl", lines("one")), purpose="batch")
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    assert fake.files == {} and len(fake.deleted) == 1


def test_spend_limits_apply_request_limits_do_not(gateway_app, tmp_path, fake):
    """A USD limit refuses a batch whose estimate does not fit (429 rate_limit_exceeded);
    requests_per_minute does not limit a batch the provider runs: its three lines go, and
    only the key's own calls count (upload, create, retrieve: 3 of 3 a minute)."""
    gw = start(gateway_app, tmp_path, fake)
    pennies = gw.openai(PENNIES)
    uploaded = pennies.files.create(file=("in.jsonl", lines("a", "b")), purpose="batch")
    with pytest.raises(openai.RateLimitError) as refused:
        pennies.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                               completion_window="24h")
    assert refused.value.code == "rate_limit_exceeded" and "$0.01 per day" in refused.value.message
    assert fake.batches == {}
    capped = gw.openai(CAPPED).with_options(max_retries=0)
    uploaded = capped.files.create(file=("in.jsonl", lines("a", "b", "c")), purpose="batch")
    batch = capped.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    (remote,) = fake.batches
    fake.finish(remote)
    conn = sqlite3.connect(tmp_path / "data" / "files.db")
    try:  # watched in files.db: every GET /v1/batches/{id} would count
        poll(lambda: conn.execute("SELECT status FROM batches WHERE id = ?",
                                  (batch.id,)).fetchone(), lambda row: row == ("completed",),
             10, "the native batch did not complete")
    finally:
        conn.close()
    assert capped.batches.retrieve(batch.id).request_counts.completed == 3
    with pytest.raises(openai.RateLimitError):
        capped.batches.retrieve(batch.id)


ANTHROPIC = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  claude: {{type: anthropic, base_url: "{base_url}", api_key: {key}, batch: native}}
pricing:
  "claude/claude-sonnet-4-5": {{input: 1000, output: 2000}}
routes:
  sonnet: {{target: {{provider: claude, model: claude-sonnet-4-5}}}}
batches: {{native_poll: 50ms}}
"""


def test_anthropic_batch_usage_counted(gateway_app, tmp_path):
    """Anthropic's Message Batches: the usage of the translated answers is counted the same
    way (the adapter shows each OpenAI-shaped line it writes)."""
    from ..fake_message_batches import KEY as ANTHROPIC_KEY
    from ..fake_message_batches import FakeMessageBatches

    with FakeMessageBatches() as anthropic:
        gw = gateway_app(ANTHROPIC.format(data=tmp_path / "data", base_url=anthropic.base_url,
                                          key=ANTHROPIC_KEY))
        client = gw.openai()
        content = b"".join(json.dumps({
            "custom_id": c, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}
        }).encode() + b"\n" for c in ("one", "fail-two", "three"))
        uploaded = client.files.create(file=("in.jsonl", content), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id,
                                      endpoint="/v1/chat/completions", completion_window="24h")
        (remote,) = anthropic.batches
        anthropic.finish(remote)
        poll(lambda: client.batches.retrieve(batch.id), lambda b: b.status == "completed", 10,
             "the batch did not complete", every=0.05)
        rows = poll(lambda: gw.get("/admin/usage?period=all").json()["usage"], lambda r: r, 10,
                    "no usage written", every=0.1)
    assert rows == [{"key": "", "route": "sonnet", "target": "claude/claude-sonnet-4-5",
                     "requests": 2, "prompt_tokens": 20, "completion_tokens": 10,
                     "cost_usd": round(2 * (10 * 1000 + 5 * 2000) / 1e6 * 0.5, 6),
                     "estimated_requests": 0}]
