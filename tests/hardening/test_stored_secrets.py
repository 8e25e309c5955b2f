"""No secret at rest, nor on the wire where it does not belong: a gateway run with known
secrets (a provider key, a virtual key, the admin token; the config names them by ${ENV}, as
the stored config versions keep its text) through chat (cached, streamed,
failing with an upstream error that quotes the key), the Responses API, /v1/files, a batch run
by the gateway, the request log with bodies, /admin/logs, /admin/stats, /dashboard and OTel
traces; afterwards not one byte of any file in the data directory (SQLite, WAL, blobs), the
log, an answer or an exported span carries a secret."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from ..fake_otlp import FakeCollector
from ..fake_upstream import Behaviour

PROVIDER_KEY = "sk-upstream-trust-SECRET-4f9a7c1e"
VIRTUAL_KEY = "gw-alice-trust-SECRET-7d3b2a90"
ADMIN_TOKEN = "admin-trust-SECRET-1c5e8f42"
SECRETS = (PROVIDER_KEY, VIRTUAL_KEY, ADMIN_TOKEN)

CONFIG = """
version: 1
server: {{data_dir: "{data}", admin_token: "${{TRUST_ADMIN_TOKEN}}"}}
defaults:
  retry: {{attempts: 1}}
providers:
  up: {{type: openai, base_url: "{url}", api_key: "${{TRUST_UPSTREAM_KEY}}"}}
routes:
  chat: {{target: {{provider: up, model: good}}}}
  leaky: {{target: {{provider: up, model: leaky}}}}
cache: {{mode: simple, ttl: 1h}}
keys:
  alice: {{key_sha256: {digest}}}
observability:
  request_log: {{log_bodies: true}}
  traces: {{exporter: otlp, endpoint: "{endpoint}", sample_ratio: 1.0}}
"""


@pytest.fixture
def collector():
    fake = FakeCollector().start()
    yield fake
    fake.stop()


def _wait_batch(gw, headers, batch_id: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        batch = gw.get(f"/v1/batches/{batch_id}", headers=headers).json()
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not end: {batch}")


def test_no_secret_in_any_stored_byte_answer_log_or_span(gateway_app, upstream, collector,
                                                         tmp_path):
    data = tmp_path / "data"
    gw = gateway_app(CONFIG.format(data=data, url=upstream.base_url,
                                   digest=hashlib.sha256(VIRTUAL_KEY.encode()).hexdigest(),
                                   endpoint=collector.endpoint),
                     env={"TRUST_UPSTREAM_KEY": PROVIDER_KEY, "TRUST_ADMIN_TOKEN": ADMIN_TOKEN,
                          "OTEL_BSP_SCHEDULE_DELAY": "50"})
    # The upstream quotes the credential it got in its error (as some providers do).
    quoting = json.dumps({"error": {"message": f"Incorrect API key provided: {PROVIDER_KEY}; "
                                    f"header Authorization: Bearer {PROVIDER_KEY}",
                                    "type": "invalid_request_error", "code": "invalid_api_key"}})
    for _ in range(6):
        upstream.script("leaky", Behaviour(status=401, body=quoting))
    alice = {"authorization": f"Bearer {VIRTUAL_KEY}"}
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    answers: list[bytes] = []

    def keep(response):
        answers.append(response.content)
        return response

    client = gw.openai(VIRTUAL_KEY)
    for _ in range(2):  # a miss, then a hit
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    list(client.chat.completions.create(model="chat", stream=True,
                                        messages=[{"role": "user", "content": "stream"}]))
    failed = keep(gw.post("/v1/chat/completions", headers=alice, json={
        "model": "leaky", "messages": [{"role": "user", "content": "x"}]}))
    assert failed.status_code == 401, failed.text
    keep(gw.post("/v1/chat/completions", headers=alice, json={
        "model": "leaky", "stream": True, "messages": [{"role": "user", "content": "y"}]}))
    keep(gw.post("/v1/responses", headers=alice, json={"model": "leaky", "input": "z"}))
    first = keep(gw.post("/v1/responses", headers=alice, json={"model": "chat", "input": "one"}))
    keep(gw.post("/v1/responses", headers=alice, json={
        "model": "chat", "input": "two", "previous_response_id": first.json()["id"]}))
    lines = b"".join(json.dumps({"custom_id": f"r{i}", "method": "POST",
                                 "url": "/v1/chat/completions", "body": {
                                     "model": model, "messages": [{"role": "user",
                                                                   "content": f"b{i}"}]}}
                                ).encode() + b"\n" for i, model in enumerate(["chat", "leaky"]))
    uploaded = keep(gw.post("/v1/files", headers=alice, data={"purpose": "batch"},
                            files={"file": ("in.jsonl", lines)})).json()
    batch = keep(gw.post("/v1/batches", headers=alice, json={
        "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"})).json()
    ended = _wait_batch(gw, alice, batch["id"])
    assert ended["status"] == "completed" and ended["error_file_id"], ended
    errors = keep(gw.get(f"/v1/files/{ended['error_file_id']}/content", headers=alice))
    assert b"Incorrect API key provided" in errors.content, errors.content  # quoted, scrubbed
    keep(gw.get(f"/v1/files/{ended['output_file_id']}/content", headers=alice))
    for path in ("/admin/logs", "/admin/stats", "/admin/usage", "/admin/keys", "/admin/config",
                 "/admin/health"):
        answer = keep(gw.get(path, headers=admin))
        assert answer.status_code == 200, (path, answer.text)
    keep(gw.get("/dashboard", headers=admin))
    spans = collector.wait_for(8)

    for answer in answers:
        for secret in SECRETS:
            assert secret.encode() not in answer, (secret, answer[:500])
    for span in spans:
        text = json.dumps(span)
        for secret in SECRETS:
            assert secret not in text, (secret, span)
        assert "authorization" not in text.lower(), span
    gw.stop()  # every writer flushed and closed: the files hold all they will
    log = (tmp_path / "gateway.log").read_bytes()
    assert log, "the gateway wrote no log"
    stored = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name == "logs.db" for p in stored), stored
    for path in [*stored, tmp_path / "gateway.log"]:
        raw = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in raw, (secret, path)
            assert secret.encode("utf-16-le") not in raw, (secret, path)


WRONG_KEY = "sk-not-a-key-but-SECRET-0d1e2f3a"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/files"), ("POST", "/v1/batches"), ("GET", "/v1/fine_tuning/jobs"),
    ("POST", "/v1/responses"), ("GET", "/v1/responses/resp_1"), ("POST", "/v1/chat/completions"),
    ("POST", "/v1/messages"), ("GET", "/v1/passthrough/up/models"), ("GET", "/admin/logs"),
    ("GET", "/dashboard")])
def test_a_wrong_key_is_never_echoed(gateway_app, upstream, collector, tmp_path, method, path):
    """A key the gateway does not know (a user's real key for another service, pasted by
    mistake) appears in no answer, log line or stored byte, whatever the endpoint."""
    data = tmp_path / "data"
    gw = gateway_app(CONFIG.format(data=data, url=upstream.base_url,
                                   digest=hashlib.sha256(VIRTUAL_KEY.encode()).hexdigest(),
                                   endpoint=collector.endpoint),
                     env={"TRUST_UPSTREAM_KEY": PROVIDER_KEY, "TRUST_ADMIN_TOKEN": ADMIN_TOKEN})
    for headers in ({"authorization": f"Bearer {WRONG_KEY}"}, {"x-api-key": WRONG_KEY},
                    {"api-key": WRONG_KEY}, {"authorization": WRONG_KEY}):
        answer = gw.request(method, path, headers=headers,
                            json={"model": "chat", "input": "x", "max_tokens": 5,
                                  "messages": [{"role": "user", "content": "x"}]}
                            if method == "POST" else None)
        assert WRONG_KEY not in answer.text, (headers, answer.text)
        assert WRONG_KEY[:20] not in answer.text, (headers, answer.text)
    gw.stop()
    for file in [*(p for p in data.rglob("*") if p.is_file()), tmp_path / "gateway.log"]:
        assert WRONG_KEY[:20].encode() not in file.read_bytes(), file


PROMPT = "PROMPT-MARKER-trust-91b2c3d4"


def test_no_prompt_in_spans_logs_or_request_log_without_bodies(gateway_app, upstream, collector,
                                                               tmp_path):
    """With the request log's bodies off (the default), a prompt (chat, streamed, Responses
    with store: false, a batch line) reaches no span attribute, no log line and no row of
    logs.db: only the stores that exist to keep it (the batch's files, encrypted) hold it."""
    data = tmp_path / "data"
    config = CONFIG.replace("request_log: {{log_bodies: true}}", "request_log: true")
    gw = gateway_app(config.format(data=data, url=upstream.base_url,
                                   digest=hashlib.sha256(VIRTUAL_KEY.encode()).hexdigest(),
                                   endpoint=collector.endpoint),
                     env={"TRUST_UPSTREAM_KEY": PROVIDER_KEY, "TRUST_ADMIN_TOKEN": ADMIN_TOKEN,
                          "OTEL_BSP_SCHEDULE_DELAY": "50"})
    alice = {"authorization": f"Bearer {VIRTUAL_KEY}"}
    message = [{"role": "user", "content": f"say {PROMPT}"}]
    assert gw.post("/v1/chat/completions", headers=alice,
                   json={"model": "chat", "messages": message}).status_code == 200
    assert gw.post("/v1/chat/completions", headers=alice,
                   json={"model": "chat", "messages": message, "stream": True}
                   ).status_code == 200
    assert gw.post("/v1/responses", headers=alice, json={
        "model": "chat", "input": f"say {PROMPT}", "store": False}).status_code == 200
    line = json.dumps({"custom_id": "p", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "chat", "messages": message}}).encode()
    uploaded = gw.post("/v1/files", headers=alice, data={"purpose": "batch"},
                       files={"file": ("p.jsonl", line)}).json()
    batch = gw.post("/v1/batches", headers=alice, json={
        "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"}).json()
    assert _wait_batch(gw, alice, batch["id"])["status"] == "completed"
    spans = collector.wait_for(4)
    assert PROMPT not in json.dumps(spans)
    gw.stop()
    assert PROMPT.encode() not in (tmp_path / "gateway.log").read_bytes()
    for path in data.rglob("*"):
        if path.is_file() and path.name.startswith(("logs.db", "cache.db", "responses.db")):
            assert PROMPT.encode() not in path.read_bytes(), path
