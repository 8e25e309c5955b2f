"""The request log's writer: a full queue drops (counted, logged) and never blocks a request;
retention is swept in the background; with log_bodies, no secret reaches the disk."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

from gateway.request_record import RequestRecord
from gateway.store import logs_db
from gateway.store.logs_writer import row

from ..inprocess_gateway import poll

CONFIG = """
version: 1
providers:
  demo: {{type: mock, api_key: "{provider_key}"}}
routes:
  live: {{target: {{provider: demo, model: m}}}}
observability:
{observability}
"""
PROVIDER_KEY = "prov-literal-credential-8817"


def start(gateway_app, observability: str):
    return gateway_app(CONFIG.format(provider_key=PROVIDER_KEY, observability=observability),
                       watch=False)


def chat(gw, content: str = "hello", **extra):
    return gw.post("/v1/chat/completions", json={
        "model": "live", "messages": [{"role": "user", "content": content}], **extra})


def count(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    except sqlite3.OperationalError:  # created, not migrated yet
        return 0
    finally:
        conn.close()


def test_full_queue_drops_and_counts_without_blocking_requests(gateway_app, tmp_path: Path):
    """With the file locked by someone else the writer cannot write: the queue fills up to
    queue_size, later rows are dropped and counted (metric, log), and every request is
    answered at once; once the lock goes, the queued rows land."""
    gw = start(gateway_app, "  request_log: {queue_size: 5}")
    assert chat(gw).status_code == 200  # creates the file
    path = tmp_path / ".gateway" / "logs.db"
    poll(lambda: count(path), lambda n: n == 1, 5, "the first row")
    blocker = sqlite3.connect(path, timeout=5)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock (readers go on: WAL)
    try:
        slowest = 0.0
        for i in range(20):
            started = time.monotonic()
            assert chat(gw, f"request {i}").status_code == 200
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 1.0, f"a request waited {slowest:.2f}s for the log"
        metrics = gw.get("/metrics").text
        assert re.search(r"^gateway_request_log_dropped_total 15\.0$", metrics, re.M), metrics
        assert re.search(r"^gateway_request_log_queue 5\.0$", metrics, re.M)
    finally:
        blocker.rollback()
        blocker.close()
    poll(lambda: count(path), lambda n: n == 6, 5, "the queued rows")
    # Logged at each flush with the total so far: on a slow machine a flush can land between
    # two drops, so wait for the line that reports all 15.
    poll(gw.log, lambda text: '"request_log_dropped"' in text and (
        '"dropped_total": 15' in text or '"dropped_total":15' in text), 5, "the 15 drops logged")


def record(time_: float, request_id: str) -> RequestRecord:
    return RequestRecord(
        request_id=request_id, trace_id="0" * 32, time=time_, endpoint="chat", route="live",
        key=None, target="demo/m", attempts=(), cache=None, stream=False, status=200,
        error=None, outcome=None, tokens_in=1, tokens_out=1, cost_usd=0.0,
        usage_estimated=False, latency_ms=1.0, ttfb_ms=1.0, overhead_ms=0.1, config_version=1)


def test_retention_sweeps_old_rows(gateway_app, tmp_path: Path):
    """Rows older than observability.retention are deleted once the gateway logs again;
    younger ones stay."""
    path = tmp_path / ".gateway" / "logs.db"
    conn = logs_db.connect(str(path))
    now = time.time()
    logs_db.insert(conn, [row(record(now - 9 * 86400, "old-1"), None),
                          row(record(now - 8 * 86400, "old-2"), None),
                          row(record(now - 6 * 86400, "young"), None)])
    conn.close()
    gw = start(gateway_app, "  retention: 7d")
    assert chat(gw).status_code == 200
    poll(lambda: count(path), lambda n: n == 2, 5, "old rows swept")
    conn = sqlite3.connect(path)
    ids = sorted(r for (r,) in conn.execute("SELECT request_id FROM requests"))
    conn.close()
    assert len(ids) == 2 and "young" in ids
    poll(gw.log, lambda text: '"request_log_swept"' in text, 5, "the sweep logged")


SECRETS = ("sk-live-0123456789abcdefXYZ", "gw-AbCdEfGhIjKlMnOpQrStUvWxYz0123", "tok3nBearerValue77",
           "hunter2-password-value", "AKIAIOSFODNN7EXAMPLE", PROVIDER_KEY)


def test_bodies_are_redacted_before_they_reach_the_disk(gateway_app, tmp_path: Path):
    """With log_bodies the request's and the answer's bodies are stored, but no secret in
    them (keys, bearer tokens, credential fields, the configured provider key) is anywhere
    in the file's bytes, WAL included."""
    gw = start(gateway_app, "  request_log: {log_bodies: true}")
    content = (f"my key is {SECRETS[0]} and {SECRETS[1]}, Authorization: Bearer {SECRETS[2]} "
               f"password={SECRETS[3]} aws {SECRETS[4]} provider {SECRETS[5]} thanks")
    reply = chat(gw, content, metadata={"api_key": "field-secret-value-991"})
    assert reply.status_code == 200 and SECRETS[0] in reply.text  # the mock echoes it
    path = tmp_path / ".gateway" / "logs.db"
    poll(lambda: count(path), lambda n: n == 1, 5, "the row")
    stored = gw.get(f"/admin/logs/{reply.headers['x-request-id']}").json()
    assert "thanks" in stored["request_body"] and "***" in stored["request_body"]
    assert "Mock reply" in stored["response_body"] and "***" in stored["response_body"]
    gw.stop()
    data = b"".join(p.read_bytes() for p in path.parent.glob("logs.db*"))
    for secret in (*SECRETS, "field-secret-value-991"):
        assert secret.encode() not in data, secret


def test_bodies_are_not_stored_by_default(gateway_app, tmp_path: Path):
    """Without log_bodies a row has no bodies, and the prompt is nowhere in the file."""
    gw = start(gateway_app, "  request_log: true")
    reply = chat(gw, "a very particular prompt phrase")
    path = tmp_path / ".gateway" / "logs.db"
    poll(lambda: count(path), lambda n: n == 1, 5, "the row")
    stored = gw.get(f"/admin/logs/{reply.headers['x-request-id']}").json()
    assert stored["request_body"] is None and stored["response_body"] is None
    gw.stop()
    data = b"".join(p.read_bytes() for p in path.parent.glob("logs.db*"))
    assert b"particular prompt" not in data


def test_failed_write_keeps_the_rows_for_the_next_flush(tmp_path: Path):
    """A batch that cannot be written (here: its folder cannot be made) stays queued, is
    logged, and lands once the disk is back; flushes back off meanwhile."""
    import asyncio

    from structlog.testing import capture_logs

    from gateway.store.logs_writer import RequestLogWriter

    blocker = tmp_path / "data"
    blocker.write_text("a file where the data directory should be")
    writer = RequestLogWriter(str(blocker / "logs.db"), queue_size=10)

    async def scenario() -> None:
        writer.pending = [(record(time.time(), f"r{i}"), False) for i in range(3)]
        with capture_logs() as logs:
            await writer.flush()
        assert [e["event"] for e in logs] == ["request_log_write_failed"]
        assert (len(writer.pending), writer.failures, writer.written) == (3, 1, 0)
        blocker.unlink()
        await writer.flush()
        assert (len(writer.pending), writer.failures, writer.written) == (0, 0, 3)
        await writer.aclose()

    asyncio.run(scenario())
    assert count(blocker / "logs.db") == 3


def test_a_native_batch_line_is_kept_once(tmp_path: Path):
    """A provider-native batch's line handed over again (its batch's usage counted again
    after a crash) is not a second row: (native_batch, native_line) is unique; other rows,
    the same request id included, are all kept."""
    import dataclasses

    conn = logs_db.connect(str(tmp_path / "logs.db"))
    line = dataclasses.replace(record(time.time(), "batch_x-one"), native_batch="batch_x",
                               native_line=0)
    other = dataclasses.replace(line, request_id="batch_x-two", native_line=1)
    logs_db.insert(conn, [row(line, None), row(record(time.time(), "live"), None)])
    logs_db.insert(conn, [row(line, None), row(other, None),
                          row(record(time.time(), "live"), None)])
    found = [r[0] for r in conn.execute("SELECT request_id FROM requests ORDER BY id")]
    conn.close()
    assert found == ["batch_x-one", "live", "batch_x-two", "live"]


def test_a_large_batch_lands_whole_in_order(tmp_path: Path):
    """A batch of more rows than one statement takes (logs_db.ROWS_PER_INSERT), rows of all
    columns and of COLUMNS alone (the rest NULL) mixed, lands row for row in the order given,
    values as built; a native line already there is skipped mid-statement, the rest kept."""
    import dataclasses

    names = logs_db.COLUMNS + logs_db.BODIES + logs_db.NATIVE
    conn = logs_db.connect(str(tmp_path / "logs.db"))
    line = dataclasses.replace(record(time.time(), "native-0"), native_batch="batch_y",
                               native_line=0)
    logs_db.insert(conn, [row(line, None)])
    now = time.time()
    records = [record(now + i / 7, f"r{i}") for i in range(2 * logs_db.ROWS_PER_INSERT + 5)]
    records[50:95] = [dataclasses.replace(r, native_batch="batch_z", native_line=i)
                      for i, r in enumerate(records[50:95])]  # a run of whole rows
    rows = [row(r, None) for r in records]
    assert {len(r) for r in rows} == {len(logs_db.COLUMNS), len(names)}
    rows.insert(3, row(line, None))  # again: left out, the rows after it kept
    logs_db.insert(conn, iter(rows))  # any iterable
    stored = conn.execute(f"SELECT {', '.join(names)} FROM requests ORDER BY id").fetchall()
    conn.close()
    padded = [r + (None,) * (len(names) - len(r)) for r in [row(line, None)] + rows]
    del padded[4]
    assert stored == padded
