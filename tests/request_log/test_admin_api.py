"""GET /admin/stats and GET /admin/logs over scripted traffic (docs/observability.md "Stats
API"): counts, error rate, tokens, cost, cache hits and latency percentiles match what was
sent, per route, target, key and model; filters, paging and parameter errors."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import pytest

from gateway.store import logs_db
from gateway.store.logs_writer import row

from ..fake_upstream import Behaviour, FakeOpenAI
from ..inprocess_gateway import poll
from .test_writer import record

TOKEN = "admin-token-for-stats-0001"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
ALICE, BOB = "sk-alice-key-000000000001", "sk-bob-key-0000000000002"

CONFIG = """
version: 1
server: {{admin_token: "{token}"}}
defaults:
  retry: {{attempts: 1}}
providers:
  up: {{type: openai-compatible, base_url: "{url}"}}
  demo: {{type: mock}}
routes:
  plain: {{target: {{provider: up, model: m1}}}}
  cached:
    target: {{provider: demo, model: c}}
    cache: {{mode: simple, ttl: 1h}}
  failing: {{target: {{provider: up, model: down}}}}
keys:
  alice: {{key_sha256: {alice}, routes: ["*"]}}
  bob: {{key_sha256: {bob}, routes: ["*"]}}
pricing:
  up/m1: {{input: 1000000, output: 2000000}}
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def traffic(gateway_app, upstream: FakeOpenAI, tmp_path: Path):
    """The gateway after 7 requests (an older row of 90 minutes ago in the file too), and the
    rows /admin/logs lists for them."""
    conn = logs_db.connect(str(tmp_path / ".gateway" / "logs.db"))
    logs_db.insert(conn, [row(record(time.time() - 5400, "90-minutes-ago"), None)])
    conn.close()
    upstream.script("down", Behaviour(status=500, body='{"error": {"message": "boom"}}'))
    gw = gateway_app(CONFIG.format(token=TOKEN, url=upstream.base_url, alice=sha(ALICE),
                                   bob=sha(BOB)), watch=False)

    def chat(key: str, model: str) -> int:
        return gw.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": model,
                             "messages": [{"role": "user", "content": "hello there"}]}
                       ).status_code

    statuses = [chat(ALICE, "plain"), chat(ALICE, "plain"), chat(BOB, "plain"),
                chat(BOB, "failing"), chat(BOB, "cached"), chat(BOB, "cached"),
                chat(BOB, "nope")]
    assert statuses == [200, 200, 200, 500, 200, 200, 404]
    rows = poll(lambda: gw.get("/admin/logs?since=1h", headers=ADMIN).json()["data"],
                lambda found: len(found) == 7, 5, "7 logged requests")
    return gw, rows


def stats(gw, query: str = "") -> dict:
    reply = gw.get(f"/admin/stats{query}", headers=ADMIN)
    assert reply.status_code == 200, reply.text
    return reply.json()


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def test_stats_totals_match_the_traffic(traffic):
    """Totals over the last hour: 7 requests (the row of 90 minutes ago is outside), 2 errors,
    tokens and cost of the three answers priced, one cache hit of two lookups."""
    gw, rows = traffic
    body = stats(gw)
    assert (body["window_s"], body["bucket_s"], body["group_by"]) == (3600, 60, None)
    assert body["until"] - body["since"] == 3600 and body["since"] <= time.time() <= body["until"]
    totals = body["totals"]
    assert (totals["requests"], totals["errors"]) == (7, 2)
    assert totals["error_rate"] == pytest.approx(2 / 7)
    assert totals["tokens_in"] == sum(r["tokens_in"] or 0 for r in rows)
    assert totals["tokens_out"] == sum(r["tokens_out"] or 0 for r in rows)
    assert totals["cost_usd"] == pytest.approx(3 * (3 * 1 + 4 * 2))  # only up/m1 is priced
    assert (totals["cache_hits"], totals["cache_hit_rate"]) == (1, 0.5)
    latencies = [r["latency_ms"] for r in rows]
    assert totals["p50_ms"] == nearest_rank(latencies, 0.5)
    assert totals["p95_ms"] == nearest_rank(latencies, 0.95)
    assert body["groups"] == []
    series = body["series"]
    assert len(series) == 60 and sum(b["requests"] for b in series) == 7
    assert [b["t"] for b in series] == [body["since"] + 60 * i for i in range(60)]
    assert sum(b["errors"] for b in series) == 2
    empty = next(b for b in series if b["requests"] == 0)
    assert (empty["p50_ms"], empty["error_rate"], empty["cost_usd"]) == (None, 0.0, 0.0)


def test_stats_by_route_key_target_and_model(traffic):
    """group_by splits the same totals, busiest first."""
    gw, rows = traffic

    def groups(by: str) -> dict[str, tuple]:
        body = stats(gw, f"?group_by={by}&window=2h&buckets=12")
        assert (body["group_by"], body["bucket_s"], len(body["series"])) == (by, 600, 12)
        assert body["totals"]["requests"] == 8  # the row of 90 minutes ago is inside now
        return {g["name"]: (g["requests"], g["errors"]) for g in body["groups"]}

    by_route = stats(gw, "?group_by=route")["groups"]
    assert [(g["name"], g["requests"], g["errors"]) for g in by_route] == [
        ("plain", 3, 0), ("cached", 2, 0), ("(none)", 1, 1), ("failing", 1, 1)]
    plain = by_route[0]
    assert (plain["tokens_in"], plain["tokens_out"], plain["cost_usd"]) == (9, 12, 33)
    assert by_route[1]["cache_hit_rate"] == 0.5
    assert groups("key") == {"bob": (5, 2), "alice": (2, 0), "(none)": (1, 0)}
    hit_target = next(r["target"] for r in rows if r["cache"] == "hit")
    targets = groups("target")
    assert targets.pop("up/m1") == (3, 0) and targets.pop("up/down") == (1, 1)
    assert targets.pop("demo/m") == (1, 0)  # the older row's
    assert sum(n for n, _ in targets.values()) == 3 and hit_target in targets
    models = groups("model")
    assert models["m1"] == (3, 0) and models["down"] == (1, 1) and models["m"] == (1, 0)


def test_stats_parameters_are_checked(traffic):
    """A bad window, group_by or buckets is a 400 naming the parameter and what it may be."""
    gw, _ = traffic
    for query, param, words in (("window=1m", "window", "from 5m to 30d"),
                                ("window=31d", "window", "from 5m to 30d"),
                                ("window=soon", "window", "a duration"),
                                ("group_by=team", "group_by", "route, target, key, model"),
                                ("buckets=0", "buckets", "from 1 to 500"),
                                ("buckets=501", "buckets", "from 1 to 500")):
        reply = gw.get(f"/admin/stats?{query}", headers=ADMIN)
        assert reply.status_code == 400, query
        error = reply.json()["error"]
        assert error["param"] == param and words in error["message"], (query, error)


def test_logs_filters_and_paging(traffic):
    """status classes and codes, route, since, limit and before_id select the rows."""
    gw, rows = traffic

    def listed(query: str) -> list[dict]:
        reply = gw.get(f"/admin/logs?{query}", headers=ADMIN)
        assert reply.status_code == 200, reply.text
        return reply.json()["data"]

    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    assert [r["status"] for r in listed("status=5xx")] == [500]
    assert [r["status"] for r in listed("status=4xx")] == [404]
    assert sorted(r["status"] for r in listed("status=error")) == [404, 500]
    assert len(listed("status=ok")) == 6  # the older row too: no since
    assert [r["route"] for r in listed("status=500")] == ["failing"]
    assert [r["key"] for r in listed("route=plain")] == ["bob", "alice", "alice"]
    assert len(listed("")) == 8 and len(listed("since=1h")) == 7
    first, second = listed("limit=2&since=1h")
    assert [first["id"], second["id"]] == [rows[0]["id"], rows[1]["id"]]
    assert [r["id"] for r in listed(f"before_id={second['id']}&since=1h")] == [
        r["id"] for r in rows[2:]]
    one = rows[3]
    assert set(one) == {"id", "request_id", "trace_id", "time", "key", "route", "endpoint",
                        "target", "status", "error", "outcome", "stream", "cache", "tokens_in",
                        "tokens_out", "cost_usd", "latency_ms", "ttfb_ms", "config_version",
                        "attempts"}
    for query, param in (("status=teapot", "status"), ("limit=0", "limit"),
                         ("since=yesterday", "since"), ("before_id=x", "before_id")):
        reply = gw.get(f"/admin/logs?{query}", headers=ADMIN)
        assert reply.status_code == 400 and reply.json()["error"]["param"] == param, query
    missing = gw.get("/admin/logs/no-such-request", headers=ADMIN)
    assert missing.status_code == 404


def test_admin_token_required(traffic):
    """Like every /admin route: no token, no stats."""
    gw, _ = traffic
    assert gw.get("/admin/stats").status_code == 401
    assert gw.get("/admin/logs").status_code == 401


def test_off_answers_404_saying_so(gateway_app):
    """With request_log: false both endpoints say the log is off."""
    gw = gateway_app("""
version: 1
providers:
  demo: {type: mock}
routes:
  live: {target: {provider: demo, model: m}}
observability: {request_log: {enabled: false}}
""", watch=False)
    for path in ("/admin/stats", "/admin/logs", "/admin/logs/abc"):
        reply = gw.get(path)
        assert reply.status_code == 404
        assert "observability.request_log is off" in reply.json()["error"]["message"]
