"""Keys, rate limits, budgets and usage through the app in process (mock provider)."""

from __future__ import annotations

import calendar
import hashlib
import json
import time
import types
from concurrent.futures import ThreadPoolExecutor

import httpx

from ..cli_runner import Result, run_cli
from ..inprocess_gateway import poll

RAW = "research-secret-key-123"
DIGEST = hashlib.sha256(RAW.encode()).hexdigest()

CONFIG = f"""
version: 1
server: {{state: sqlite}}
providers:
  demo: {{type: mock}}
  slow: {{type: mock, latency: 300ms}}
pricing:
  "demo/priced": {{input: 1000, output: 1000}}    # $0.001 a token: budgets are easy to reach
routes:
  chat: {{target: {{provider: demo, model: m}}}}
  priced: {{target: {{provider: demo, model: priced}}}}
  waiting: {{target: {{provider: slow, model: w}}}}
  narrow:
    limits: {{requests_per_minute: 2}}
    target: {{provider: demo, model: n}}
keys:
  research:
    key_sha256: {DIGEST}
    limits: {{requests_per_minute: 5, max_parallel_requests: 2}}
    budget: {{usd: 0.05, period: monthly, alert_at: [0.3, 0.6]}}
    metadata: {{team: research}}
"""
AUTH = {"Authorization": f"Bearer {RAW}"}


def post(gw, model: str, headers=None, **extra) -> httpx.Response:
    return gw.post("/v1/chat/completions", headers=headers or AUTH,
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}], **extra})


def post_at_once(gw, count: int, model: str, **extra) -> list[httpx.Response]:
    """``count`` requests sent together (one thread each), their answers in order."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: post(gw, model, **extra), range(count)))


def gateway_cli(gw, *args: str) -> Result:
    return run_cli(*args, "--config", gw.config_path)


def usage_rows(gw, query: str, done) -> list[dict]:
    """GET /admin/usage?QUERY until ``done(rows)``: usage is written once a second."""
    return poll(lambda: gw.get("/admin/usage?" + query).json()["usage"], done,
                what="usage not written")


def test_streamed_answers_carry_rate_limit_headers(gateway_app):
    """A streamed answer carries the x-ratelimit headers too (they go out with its status
    line, through the response_headers hook)."""
    gw = gateway_app(CONFIG)
    answer = post(gw, "chat", stream=True)
    assert answer.status_code == 200 and "data: [DONE]" in answer.text
    assert answer.headers["x-ratelimit-limit-requests"] == "5"
    assert answer.headers["x-ratelimit-remaining-requests"] == "4"


def test_key_rate_limit_gives_429_with_headers(gateway_app):
    """The key's requests_per_minute: the sixth request gets 429 with Retry-After and
    OpenAI's x-ratelimit headers; allowed answers carry the headers too."""
    gw = gateway_app(CONFIG)
    answers = [post(gw, "chat") for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    first = answers[0].headers
    assert first["x-ratelimit-limit-requests"] == "5"
    assert first["x-ratelimit-remaining-requests"] == "4"
    assert first["x-ratelimit-reset-requests"].endswith("s")
    refused = answers[-1]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    assert "key 'research' allows 5 requests per minute" in error["message"]


def test_route_limit_applies_to_every_caller(gateway_app):
    """A route's limits count all of its callers together."""
    gw = gateway_app(CONFIG)
    assert [post(gw, "narrow").status_code for _ in range(3)] == [200, 200, 429]
    assert "route 'narrow' allows 2 requests per minute" in post(gw, "narrow").json()["error"]["message"]


def test_max_parallel_requests(gateway_app):
    """Only max_parallel_requests run at once; the next is refused, and the slots come back."""
    gw = gateway_app(CONFIG)
    statuses = sorted(r.status_code for r in post_at_once(gw, 3, "waiting"))
    assert statuses == [200, 200, 429]
    assert post(gw, "chat").status_code == 200  # slots released


def test_budget_blocks_and_alerts_once_per_threshold(gateway_app):
    """Spend reaches the monthly budget: then 429 budget_exceeded; each alert_at threshold
    is crossed (and reported) once."""
    text = CONFIG.replace("requests_per_minute: 5, max_parallel_requests: 2", "requests_per_minute: 1000")
    gw = gateway_app(text)
    statuses = []
    for _ in range(30):
        r = post(gw, "priced", max_tokens=5)
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[-1] == 429 and statuses.count(200) >= 3
    refused = post(gw, "priced", max_tokens=5)
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert "key 'research' has spent its monthly budget of $0.05" in refused.json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) > 0
    alerts = [json.loads(line) for line in gw.log().splitlines()
              if '"budget_threshold"' in line]
    assert sorted(a["threshold"] for a in alerts) == [0.3, 0.6]
    usage = usage_rows(gw, "key=research&period=all", lambda rows: rows)
    spent = sum(row["cost_usd"] for row in usage)
    assert 0.025 <= spent <= 0.05 + 0.011  # never more than one request past the budget


def test_a_spent_budget_opens_again_with_the_next_period(gateway_app, monkeypatch):
    """The limits keep a budget's counter for the period running; on the first of the next
    month (UTC) the key spends from a new one."""
    import gateway.middleware.limits as limits_module

    clock = [calendar.timegm((2026, 11, 30, 23, 59, 0))]
    monkeypatch.setattr(limits_module, "time", types.SimpleNamespace(
        time=lambda: clock[0], gmtime=time.gmtime, strftime=time.strftime))
    text = CONFIG.replace("requests_per_minute: 5, max_parallel_requests: 2", "requests_per_minute: 1000")
    gw = gateway_app(text)
    statuses = [post(gw, "priced", max_tokens=5).status_code for _ in range(30)]
    assert statuses[-1] == 429 and statuses.count(200) >= 3
    clock[0] += 59.5  # still November
    assert post(gw, "priced", max_tokens=5).json()["error"]["code"] == "budget_exceeded"
    clock[0] += 1  # 2026-12-01 00:00:00.5
    assert post(gw, "priced", max_tokens=5).status_code == 200


def test_concurrent_requests_cannot_overspend(gateway_app):
    """50 simultaneous requests against a nearly spent budget overspend by at most one
    request's cost."""
    text = CONFIG.replace("requests_per_minute: 5, max_parallel_requests: 2", "requests_per_minute: 1000")
    gw = gateway_app(text)
    answers = post_at_once(gw, 50, "priced", max_tokens=5)
    ok = [r for r in answers if r.status_code == 200]
    assert 1 <= len(ok) < 50 and all(r.status_code in (200, 429) for r in answers)
    spent = sum(r.json()["usage"]["total_tokens"] for r in ok) * 0.001
    one_request = max(r.json()["usage"]["total_tokens"] for r in ok) * 0.001
    assert spent <= 0.05 + one_request


def test_keys_created_by_cli_work_and_revocation_is_immediate(gateway_app):
    """`gateway keys create` prints a key once; it works at once against the running
    server; `gateway keys revoke` makes the next request 401."""
    gw = gateway_app(CONFIG)
    created = gateway_cli(gw, "keys", "create", "ci-bot", "--routes", "chat", "--rpm", "100")
    assert created.code == 0, created.err
    raw = created.out.strip()
    assert raw.startswith("gw-") and "only time it is shown" in created.err
    bearer = {"Authorization": f"Bearer {raw}"}
    assert post(gw, "chat", bearer).status_code == 200
    assert post(gw, "priced", bearer).status_code == 403
    listed = gateway_cli(gw, "keys", "list", "--format", "json")
    names = {k["name"]: k for k in listed.json}
    assert names["ci-bot"]["routes"] == ["chat"] and raw not in listed.out
    assert hashlib.sha256(raw.encode()).hexdigest() not in listed.out
    assert gateway_cli(gw, "keys", "revoke", "ci-bot").code == 0
    assert post(gw, "chat", bearer).status_code == 401


def test_keys_through_the_admin_api(gateway_app):
    """POST /admin/keys returns the key once; GET never shows it; DELETE revokes."""
    gw = gateway_app(CONFIG)
    created = gw.post("/admin/keys", json={
        "name": "svc", "routes": ["chat"], "rpm": 2, "expires": "30d", "metadata": {"team": "x"}})
    assert created.status_code == 201
    raw = created.json()["key"]
    bearer = {"Authorization": f"Bearer {raw}"}
    assert [post(gw, "chat", bearer).status_code for _ in range(3)] == [200, 200, 429]
    listing = gw.get("/admin/keys")
    assert raw not in listing.text and "svc" in listing.text
    assert gw.delete("/admin/keys/svc").status_code == 200
    assert post(gw, "chat", bearer).status_code == 401
    assert gw.delete("/admin/keys/svc").status_code == 404


def test_usage_by_key_route_and_target(gateway_app):
    """/admin/usage and `gateway usage` report requests, tokens and cost."""
    gw = gateway_app(CONFIG)
    for _ in range(3):
        assert post(gw, "chat").status_code == 200
    post(gw, "priced", max_tokens=5)
    rows = usage_rows(gw, "period=all", lambda rows: sum(r["requests"] for r in rows) == 4)
    by_route = {r["route"]: r for r in rows}
    assert by_route["chat"]["requests"] == 3 and by_route["chat"]["key"] == "research"
    assert by_route["chat"]["target"] == "demo/m" and by_route["chat"]["cost_usd"] == 0
    assert by_route["priced"]["cost_usd"] > 0 and by_route["priced"]["completion_tokens"] > 0
    cli = gateway_cli(gw, "usage", "--period", "all", "--format", "json")
    assert {r["route"] for r in cli.json} == {"chat", "priced"}


def test_budget_survives_a_restart(gateway_app):
    """With the sqlite state backend, a spent budget is still spent after a restart."""
    text = CONFIG.replace("requests_per_minute: 5, max_parallel_requests: 2", "requests_per_minute: 1000")
    gw = gateway_app(text)
    while post(gw, "priced", max_tokens=5).status_code == 200:
        pass
    gw.stop()
    again = gateway_app(text)
    assert post(again, "priced", max_tokens=5).json()["error"]["code"] == "budget_exceeded"


def test_no_raw_key_in_logs_or_admin_output(gateway_app):
    """Neither the raw key nor created keys appear in any log line or admin response."""
    gw = gateway_app(CONFIG)
    post(gw, "chat")
    created = gw.post("/admin/keys", json={"name": "tmp"}).json()["key"]
    post(gw, "chat", {"Authorization": f"Bearer {created}"})
    post(gw, "chat", {"Authorization": "Bearer wrong-key-value"})
    outputs = [gw.get(p).text for p in
               ("/admin/config", "/admin/keys", "/admin/health", "/admin/usage", "/metrics")]
    for text in outputs + [gw.log()]:
        assert RAW not in text and created not in text and "wrong-key-value" not in text


BIG = "big-limits-key-456"


def test_large_limits_are_written_as_whole_numbers(gateway_app):
    """A limit of ten million is "10000000" in the headers and messages, never "1e+07" (which
    a client parsing the header as an integer cannot read)."""
    config = CONFIG.replace("routes:\n", "routes:\n  narrow-big:\n"
                            "    limits: {tokens_per_minute: 20000000}\n"
                            "    target: {provider: demo, model: nb}\n", 1)
    gw = gateway_app(config + f"""
  big:
    key_sha256: {hashlib.sha256(BIG.encode()).hexdigest()}
    limits: {{requests_per_minute: 10000000, tokens_per_minute: 100000000000}}
    budget: {{usd: 1000000000, period: monthly}}
""")
    answer = post(gw, "chat", headers={"Authorization": f"Bearer {BIG}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-ratelimit-limit-requests"] == "10000000"
    assert answer.headers["x-ratelimit-limit-tokens"] == "100000000000"
    assert int(answer.headers["x-ratelimit-remaining-tokens"]) > 10**10
    too_many = post(gw, "narrow-big", headers={"Authorization": f"Bearer {BIG}"},
                    max_tokens=30_000_000)  # the estimate alone is past the route's limit
    assert too_many.status_code == 429, too_many.text
    assert "allows 20000000 tokens per minute" in too_many.json()["error"]["message"]
