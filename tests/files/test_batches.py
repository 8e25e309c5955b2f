"""/v1/batches run by the gateway through the real app with the official openai client: a
1,000-line batch against the mock provider; per-line fallback and per-line errors; cancel;
expiry; batches owned by their key."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time

import openai
import pytest

from ..inprocess_gateway import poll
from .test_files_api import batch_line, jsonl

CONFIG = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  demo: {{type: mock}}
  backup: {{type: mock}}
  down: {{type: mock, error_rate: 1, error_status: 503}}
  slow: {{type: mock, latency: {latency}}}
routes:
  chat: {{target: {{provider: demo, model: m}}}}
  smart:
    fallback:
      targets:
        - target: {{provider: down, model: first}}
        - target: {{provider: backup, model: second}}
  broken: {{target: {{provider: down, model: first}}}}
  slow: {{target: {{provider: slow, model: s}}}}
batches: {{concurrency: {concurrency}, max_attempts: 1}}
defaults: {{retry: {{attempts: 1}}}}
"""


def start(gateway_app, tmp_path, *, concurrency=16, latency="0s", extra=""):
    return gateway_app(CONFIG.format(data=tmp_path / "data", concurrency=concurrency,
                                     latency=latency) + extra)


def submit(client, lines) -> object:
    made = client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    return client.batches.create(input_file_id=made.id, endpoint="/v1/chat/completions",
                                 completion_window="24h", metadata={"run": "test"})


def wait(client, batch_id, statuses=("completed",), timeout=20.0):
    return poll(lambda: client.batches.retrieve(batch_id), lambda b: b.status in statuses,
                timeout, f"batch {batch_id} did not reach {statuses}", every=0.05)


def lines_of(client, file_id) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).read().splitlines()]


def test_thousand_lines_complete(gateway_app, tmp_path):
    """1,000 lines through the mock: completed with 1,000 outputs, each custom_id once with
    its own answer, request_counts right, no error file."""
    gw = start(gateway_app, tmp_path, concurrency=32)
    client = gw.openai()
    started = time.monotonic()
    batch = submit(client, [batch_line(i) for i in range(1000)])
    assert batch.object == "batch" and batch.status in ("validating", "in_progress")
    assert batch.request_counts.total == 1000 and batch.metadata == {"run": "test"}
    done = wait(client, batch.id)
    took = time.monotonic() - started
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (1000, 1000, 0)
    assert done.error_file_id is None and done.completed_at and done.in_progress_at
    output = lines_of(client, done.output_file_id)
    assert sorted(o["custom_id"] for o in output) == sorted(f"req-{i}" for i in range(1000))
    for out in output:
        i = out["custom_id"].removeprefix("req-")
        assert out["response"]["status_code"] == 200 and out["error"] is None
        assert out["response"]["body"]["choices"][0]["message"]["content"].endswith(f"hi {i}")
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    with sqlite3.connect(tmp_path / "data" / "files.db") as db:  # kept in the files only
        assert db.execute("SELECT COUNT(*) FROM batch_results").fetchone()[0] == 0
    print(f"\n1000-line batch: {took:.2f}s")
    assert took < 15


def test_fallback_per_line_and_errors(gateway_app, tmp_path):
    """Lines to a route whose first target fails fall back line by line; lines to a route
    with no way out land in the error file with the upstream's status."""
    gw = start(gateway_app, tmp_path)
    client = gw.openai()
    lines = [batch_line(i, body={"model": "smart" if i % 2 else "broken",
                                 "messages": [{"role": "user", "content": f"q {i}"}]})
             for i in range(10)]
    done = wait(client, submit(client, lines).id)
    assert (done.request_counts.completed, done.request_counts.failed) == (5, 5)
    output, errors = lines_of(client, done.output_file_id), lines_of(client, done.error_file_id)
    assert sorted(o["custom_id"] for o in output) == [f"req-{i}" for i in (1, 3, 5, 7, 9)]
    assert all(o["response"]["body"]["model"] == "second" for o in output)
    assert sorted(e["custom_id"] for e in errors) == [f"req-{i}" for i in (0, 2, 4, 6, 8)]
    assert all(e["response"]["status_code"] == 503 and e["error"]["message"] for e in errors)


def test_cancel(gateway_app, tmp_path):
    """A cancelled batch stops sending lines, ends cancelled, and keeps what was answered."""
    gw = start(gateway_app, tmp_path, concurrency=2, latency="100ms")
    client = gw.openai()
    lines = [batch_line(i, body={"model": "slow", "messages": [{"role": "user",
                                                                "content": "x"}]})
             for i in range(100)]
    batch = submit(client, lines)
    wait(client, batch.id, ("in_progress",))
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    done = wait(client, batch.id, ("cancelled",))
    assert done.cancelled_at and done.request_counts.completed < 100
    assert len(lines_of(client, done.output_file_id)) == done.request_counts.completed
    again = gw.post(f"/v1/batches/{batch.id}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_expiry(gateway_app, tmp_path):
    """At its completion window's end a batch stops: expired, the lines never sent in the
    error file as batch_expired."""
    gw = start(gateway_app, tmp_path, concurrency=1, latency="50ms")
    client = gw.openai()
    lines = [batch_line(i, body={"model": "slow", "messages": [{"role": "user",
                                                                "content": "x"}]})
             for i in range(60)]
    batch = submit(client, lines)
    assert batch.expires_at - batch.created_at == 24 * 3600
    wait(client, batch.id, ("in_progress",))
    with sqlite3.connect(tmp_path / "data" / "files.db") as db:  # the window runs out now
        db.execute("UPDATE batches SET expires_at = ? WHERE id = ?", (int(time.time()), batch.id))
    done = wait(client, batch.id, ("expired",))
    assert done.expired_at and done.request_counts.completed < 60
    assert done.request_counts.completed + done.request_counts.failed == 60
    errors = lines_of(client, done.error_file_id)
    assert errors and all(e["error"]["code"] == "batch_expired" for e in errors)


def test_batches_belong_to_their_key(gateway_app, tmp_path):
    """Another key gets 404 for a batch and cannot start one on a file it does not own; the
    lines run as the owning key (its route list applies: a route it may not use is 403)."""
    digest = {name: hashlib.sha256(f"sk-{name}".encode()).hexdigest() for name in ("a", "b")}
    gw = start(gateway_app, tmp_path, extra=f"""
keys:
  alice: {{key_sha256: {digest['a']}, routes: [chat]}}
  bob: {{key_sha256: {digest['b']}}}
""")
    alice, bob = gw.openai("sk-a"), gw.openai("sk-b")
    lines = [batch_line(0), batch_line(1, body={"model": "smart", "messages": [
        {"role": "user", "content": "x"}]})]
    batch = submit(alice, lines)
    with pytest.raises(openai.NotFoundError):
        bob.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        bob.batches.cancel(batch.id)
    with pytest.raises(openai.NotFoundError):
        bob.batches.create(input_file_id=batch.input_file_id, endpoint="/v1/chat/completions",
                           completion_window="24h")
    assert list(bob.batches.list()) == []
    done = wait(alice, batch.id)
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    (error,) = lines_of(alice, done.error_file_id)
    assert error["custom_id"] == "req-1" and error["response"]["status_code"] == 403
    assert [b.id for b in alice.batches.list()] == [batch.id]


def test_bad_batch_requests(gateway_app, tmp_path):
    """Wrong endpoint, window, file purpose or a missing file: clear 4xx."""
    gw = start(gateway_app, tmp_path)
    client = gw.openai()
    made = client.files.create(file=("in.jsonl", jsonl([batch_line(0)])), purpose="batch")
    other = client.files.create(file=("a.txt", b"a"), purpose="user_data")
    for body, param in (
            ({"input_file_id": made.id, "endpoint": "/v1/embeddings"}, "endpoint"),
            ({"input_file_id": made.id, "endpoint": "/v1/nothing"}, "endpoint"),
            ({"input_file_id": made.id, "endpoint": "/v1/chat/completions",
              "completion_window": "1h"}, "completion_window"),
            ({"input_file_id": other.id, "endpoint": "/v1/chat/completions"}, "input_file_id")):
        answer = gw.post("/v1/batches", json=body)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, body
    missing = gw.post("/v1/batches", json={"input_file_id": "file-nope",
                                           "endpoint": "/v1/chat/completions"})
    assert missing.status_code == 404
    assert gw.get("/v1/batches/batch_nope").status_code == 404
