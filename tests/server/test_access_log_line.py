"""The access log's line (gateway/server/access_log.py) is written by logs.info_line, which
builds configure()'s JSON line itself: it must be byte for byte what structlog writes."""

from __future__ import annotations

import io
import json
import re
import sys

import orjson
import pytest
import structlog
from structlog.testing import capture_logs

from gateway import logs
from gateway.graph.context import RequestContext
from gateway.server.access_log import log_request


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch):
    """These tests configure logging for themselves: the set-up before them comes back."""
    before = structlog.get_config()
    before["processors"] = list(before["processors"])
    monkeypatch.setattr(logs, "_FAST", logs._FAST)
    yield
    structlog.configure(**before)


class _Stderr:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def isatty(self) -> bool:
        return False


def _configure(monkeypatch, level: str = "info") -> _Stderr:
    err = _Stderr()
    monkeypatch.setattr(sys, "stderr", err)
    logs.configure(level, json=True)
    return err


def _lines(err: _Stderr) -> list[bytes]:
    return err.buffer.getvalue().splitlines()


def _same_but_time(fast: bytes, slow: bytes) -> None:
    stamp = re.compile(rb'"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"')
    assert stamp.search(fast) and stamp.search(slow)
    assert stamp.sub(b"T", fast) == stamp.sub(b"T", slow)


def test_info_line_is_structlogs_line(monkeypatch):
    err = _configure(monkeypatch)
    log = logs.get_logger("gateway.request")
    fields = {"request_id": "r1", "endpoint": "chat", "route": "é", "status": 200, "stream": False,
              "key": None, "latency_ms": 1.25, "token": "secret-value"}
    logs.info_line(log, "request", dict(fields))
    log.info("request", **fields)
    fast, slow = _lines(err)
    _same_but_time(fast, slow)
    assert list(json.loads(fast)) == [*fields, "event", "level", "timestamp"]
    assert json.loads(fast)["token"] == "***"  # scrubbed as structlog's chain scrubs


def test_iso_utc_is_structlogs_timestamp():
    """The fast line's timestamp is datetime's ISO text in UTC as TimeStamper writes it, at
    whole seconds, around them and across days (microseconds floored, never rounded)."""
    import datetime
    import random

    def expected(ns: int) -> str:
        at = datetime.datetime.fromtimestamp(ns // 10**9, datetime.timezone.utc)
        at = at.replace(microsecond=(ns % 10**9) // 1000)
        return at.isoformat().replace("+00:00", "Z")

    rng = random.Random(8)
    base = 1_796_000_000 * 10**9
    instants = [base, base + 999, base + 1000, base + 999_999_999, base + 10**9, 0, 86399 * 10**9 + 500]
    instants += [rng.randrange(0, 4_000_000_000 * 10**9) for _ in range(2000)]
    for ns in sorted(instants) + instants:  # in order (one second after another) and not
        assert logs.iso_utc(ns) == expected(ns), ns


def test_info_line_follows_the_level(monkeypatch):
    err = _configure(monkeypatch, "warning")
    logs.info_line(logs.get_logger("x"), "request", {"a": 1})
    assert _lines(err) == []


def test_a_reconfigured_structlog_gets_the_event(monkeypatch):
    """capture_logs (or any set-up that is not configure()'s) sees the event through structlog."""
    err = _configure(monkeypatch)
    with capture_logs() as captured:
        logs.info_line(logs.get_logger("x"), "request", {"a": 1})
    assert captured == [{"a": 1, "event": "request", "log_level": "info"}]
    assert _lines(err) == []
    structlog.configure(processors=[structlog.processors.JSONRenderer(serializer=orjson.dumps)])
    logs.info_line(logs.get_logger("x"), "request", {"a": 1})  # written by this set-up
    assert _lines(err) == [b'{"a":1,"event":"request"}']


def test_access_log_line(monkeypatch):
    err = _configure(monkeypatch)
    ctx = RequestContext(route="chat", body={}, endpoint="chat", request_id="r2")
    ctx.key_name = "team-a"
    log_request(ctx, "chat", "r2", 200, "up/m")
    log_request(None, "chat", "r3", 400, None, error="bad", outcome="interrupted")
    first, second = (json.loads(line) for line in _lines(err))
    assert list(first) == ["request_id", "endpoint", "route", "target", "status", "attempts",
                           "stream", "key", "latency_ms", "error", "event", "level", "timestamp"]
    assert first["key"] == "team-a" and first["event"] == "request" and first["level"] == "info"
    assert second == {**second, "request_id": "r3", "status": 400, "error": "bad",
                      "outcome": "interrupted", "event": "request"}
