"""The calls the gateway answers without the graph (/v1/files, /v1/batches,
/v1/fine_tuning/jobs, the stored responses of /v1/responses) count as requests against the
caller's request limits (key, team, gateway), with the same 429, Retry-After and
x-ratelimit-* headers as chat; token limits do not apply to them."""

from __future__ import annotations

import hashlib

import openai
import pytest

from ..files.test_files_api import batch_line, jsonl

RAW = "limited-files-key-1234"
DIGEST = hashlib.sha256(RAW.encode()).hexdigest()
TEAM_RAW = "team-files-key-1234"
TEAM_DIGEST = hashlib.sha256(TEAM_RAW.encode()).hexdigest()
TOKENS_RAW = "tokens-only-key-1234"
TOKENS_DIGEST = hashlib.sha256(TOKENS_RAW.encode()).hexdigest()
AUTH = {"Authorization": f"Bearer {RAW}"}

CONFIG = f"""
version: 1
server: {{data_dir: "{{data}}", state: sqlite}}
providers:
  demo: {{type: mock}}
routes:
  chat: {{target: {{provider: demo, model: m}}}}
{{limits}}
teams:
  ops: {{limits: {{requests_per_minute: 2}}}}
keys:
  limited:
    key_sha256: {DIGEST}
    limits: {{requests_per_minute: {{rpm}}}}
  teamed:
    key_sha256: {TEAM_DIGEST}
    metadata: {{team: ops}}
  tokens:
    key_sha256: {TOKENS_DIGEST}
    limits: {{tokens_per_minute: 1}}
"""

# Every call of these APIs, each answering without the graph (what it answers does not
# matter: a 404 counts as a call too).
CALLS = [
    ("GET", "/v1/files"),
    ("GET", "/v1/files/file-none"),
    ("GET", "/v1/files/file-none/content"),
    ("DELETE", "/v1/files/file-none"),
    ("GET", "/v1/batches"),
    ("GET", "/v1/batches/batch_none"),
    ("POST", "/v1/batches/batch_none/cancel"),
    ("GET", "/v1/fine_tuning/jobs"),
    ("GET", "/v1/fine_tuning/jobs/ftjob-none"),
    ("POST", "/v1/fine_tuning/jobs/ftjob-none/cancel"),
    ("GET", "/v1/fine_tuning/jobs/ftjob-none/events"),
    ("GET", "/v1/responses/resp_none"),
    ("DELETE", "/v1/responses/resp_none"),
    ("GET", "/v1/responses/resp_none/input_items"),
]


def start(gateway_app, tmp_path, rpm: int, limits: str = ""):
    return gateway_app(CONFIG.replace("{data}", str(tmp_path / "data"))
                       .replace("{rpm}", str(rpm)).replace("{limits}", limits))


def refused(answer, scope: str, allowed: str) -> None:
    assert answer.status_code == 429, (answer.status_code, answer.text)
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.headers["x-ratelimit-remaining-requests"] == "0"
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert f"{scope} allows {allowed}" in error["message"], error["message"]


def test_every_call_counts_against_the_keys_requests_per_minute(gateway_app, tmp_path):
    """Uploads, batch creates and every other call of the four APIs each count one request:
    the key's budget of calls answers, each with x-ratelimit-* headers, then every one of
    them gets 429 as chat does, and chat too."""
    calls = len(CALLS) + 2
    gw = start(gateway_app, tmp_path, calls)
    client = gw.openai(RAW).with_options(max_retries=0)
    made = client.files.create(file=("in.jsonl", jsonl([batch_line(1)])), purpose="batch")
    bad_batch = gw.post("/v1/batches", headers=AUTH, json={"endpoint": "/v1/nothing"})
    assert bad_batch.status_code == 400
    answers = [gw.request(method, path, headers=AUTH) for method, path in CALLS]
    assert all(a.status_code != 429 for a in answers), [a.text for a in answers]
    remaining = [int(a.headers["x-ratelimit-remaining-requests"]) for a in answers]
    assert remaining == list(range(len(CALLS) - 1, -1, -1))
    assert {a.headers["x-ratelimit-limit-requests"] for a in answers} == {str(calls)}
    for method, path in [*CALLS, ("POST", "/v1/batches")]:
        refused(gw.request(method, path, headers=AUTH), "key 'limited'",
                f"{calls} requests per minute")
    with pytest.raises(openai.RateLimitError):
        client.files.create(file=("more.txt", b"x"), purpose="user_data")
    with pytest.raises(openai.RateLimitError):
        client.files.content(made.id)
    chat = gw.post("/v1/chat/completions", headers=AUTH,
                   json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    refused(chat, "key 'limited'", f"{calls} requests per minute")
    metrics = gw.get("/metrics").text
    assert 'gateway_rate_limited_total{reason="rate_limit",route="/v1/files"}' in metrics


def test_team_and_gateway_limits_count_calls_too(gateway_app, tmp_path):
    """A team's requests_per_minute (the key's metadata names the team) and the gateway's
    own count these calls; a key with only a token limit is never refused for them."""
    gw = start(gateway_app, tmp_path, 100, "limits: {requests_per_minute: 6}")
    team = {"Authorization": f"Bearer {TEAM_RAW}"}
    assert [gw.get("/v1/files", headers=team).status_code for _ in range(2)] == [200, 200]
    refused(gw.get("/v1/batches", headers=team), "team 'ops'", "2 requests per minute")
    tokens = {"Authorization": f"Bearer {TOKENS_RAW}"}
    answers = [gw.get("/v1/files", headers=tokens) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert "x-ratelimit-limit-tokens" not in answers[0].headers
    # 2 + 3 calls answered so far (a refused one counts nothing): the sixth answers, then
    # the gateway's 6 are spent, for every caller.
    assert gw.get("/v1/files", headers=tokens).status_code == 200
    refused(gw.get("/v1/files", headers=tokens), "the gateway", "6 requests per minute")


def test_calls_without_limits_carry_no_rate_headers(gateway_app, tmp_path):
    """A key without request limits (and no gateway or team limit) is not counted: no
    x-ratelimit-* headers, as for chat."""
    gw = start(gateway_app, tmp_path, 1)
    tokens = {"Authorization": f"Bearer {TOKENS_RAW}"}
    answer = gw.get("/v1/files", headers=tokens)
    assert answer.status_code == 200
    assert not [h for h in answer.headers if h.startswith("x-ratelimit")]
