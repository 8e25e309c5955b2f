"""The request log (builtin/request_log.py): one row per request in logs.db, written in the
background, with every attempt, the cache status, tokens, cost and time to first byte."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.store import logs_db

from ..fake_upstream import Behaviour, FakeOpenAI
from ..inprocess_gateway import poll

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  up: {{type: openai-compatible, base_url: "{url}"}}
  demo: {{type: mock}}
routes:
  plain: {{target: {{provider: up, model: m1}}}}
  backup:
    fallback:
      targets:
        - target: {{provider: up, model: broken}}
        - target: {{provider: demo, model: spare}}
  cached:
    target: {{provider: demo, model: c}}
    cache: {{mode: simple, ttl: 1h}}
  failing: {{target: {{provider: up, model: down}}}}
pricing:
  up/m1: {{input: 1000000, output: 2000000}}
observability:
  request_log: {{queue_size: 1000}}
"""


def rows(path: Path, count: int) -> list[dict]:
    """The log's rows, oldest first, once ``count`` have been written."""
    def read() -> list[dict]:
        if not path.exists():
            return []
        conn = logs_db.connect(str(path))
        try:
            return list(reversed(logs_db.rows(conn, logs_db.Filter(limit=1000))))
        finally:
            conn.close()

    return poll(read, lambda found: len(found) >= count, 5, f"{count} log rows")


def chat(gw, model: str, **extra):
    return gw.post("/v1/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": "hello there"}], **extra})


def test_rows_of_success_fallback_cache_stream_and_failure(gateway_app, upstream: FakeOpenAI,
                                                           tmp_path: Path):
    """Each kind of request leaves the row that tells what happened to it."""
    upstream.script("broken", 503)
    upstream.script("down", Behaviour(status=500, body='{"error": {"message": "boom"}}'))
    gw = gateway_app(CONFIG.format(url=upstream.base_url))
    ok = chat(gw, "plain")
    fallback = chat(gw, "backup")
    miss, hit = chat(gw, "cached"), chat(gw, "cached")
    with gw.stream("POST", "/v1/chat/completions", json={
            "model": "plain", "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}) as streamed:
        streamed.read()
    failed = chat(gw, "failing")
    unknown = chat(gw, "nope")
    assert [r.status_code for r in (ok, fallback, miss, hit, streamed, failed, unknown)] == [
        200, 200, 200, 200, 200, 500, 404]
    found = rows(tmp_path / ".gateway" / "logs.db", 7)
    by_id = {row["request_id"]: row for row in found}
    assert len(by_id) == 7

    row = by_id[ok.headers["x-request-id"]]
    assert (row["route"], row["target"], row["status"], row["endpoint"]) == (
        "plain", "up/m1", 200, "chat")
    assert (row["tokens_in"], row["tokens_out"]) == (3, 4)
    assert row["cost_usd"] == 3 + 2 * 4
    assert row["attempts"] == [{"target": "up/m1", "status": 200,
                                "latency_ms": row["attempts"][0]["latency_ms"],
                                "error_class": None}]
    assert row["latency_ms"] >= row["ttfb_ms"] > 0 and row["stream"] is False
    assert len(row["trace_id"]) == 32 and row["config_version"] == 1 and row["error"] is None

    row = by_id[fallback.headers["x-request-id"]]
    assert [(a["target"], a["status"], a["error_class"]) for a in row["attempts"]] == [
        ("up/broken", 503, "server"), ("demo/spare", 200, None)]
    assert (row["target"], row["status"]) == ("demo/spare", 200)

    assert by_id[miss.headers["x-request-id"]]["cache"] == "miss"
    row = by_id[hit.headers["x-request-id"]]
    assert (row["cache"], row["attempts"], row["status"]) == ("hit", [], 200)

    row = by_id[streamed.headers["x-request-id"]]
    assert row["stream"] is True and row["status"] == 200
    assert row["tokens_out"] > 0 and row["ttfb_ms"] is not None
    assert row["latency_ms"] >= row["ttfb_ms"]

    row = by_id[failed.headers["x-request-id"]]
    assert (row["status"], row["route"], row["target"]) == (500, "failing", "up/down")
    assert "boom" in row["error"] and row["attempts"][0]["status"] == 500
    assert row["tokens_in"] is None and row["cost_usd"] is None

    row = by_id[unknown.headers["x-request-id"]]
    assert (row["status"], row["route"], row["attempts"]) == (404, "", [])
    assert "request_body" not in row


def test_off_writes_nothing(gateway_app, upstream: FakeOpenAI, tmp_path: Path):
    """request_log: false keeps no file and the admin API says the log is off."""
    gw = gateway_app(CONFIG.format(url=upstream.base_url).replace(
        "request_log: {queue_size: 1000}", "request_log: false"))
    assert chat(gw, "plain").status_code == 200
    gw.stop()
    assert not (tmp_path / ".gateway" / "logs.db").exists()


def test_file_is_private_and_wal(gateway_app, upstream: FakeOpenAI, tmp_path: Path):
    """logs.db is created 0600, in WAL mode."""
    gw = gateway_app(CONFIG.format(url=upstream.base_url))
    chat(gw, "plain")
    path = tmp_path / ".gateway" / "logs.db"
    rows(path, 1)
    assert path.stat().st_mode & 0o777 == 0o600
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
