"""The simple response cache through the app in process (mock provider): hit, miss and skip,
canonical keys, Cache-Control, namespaces, TTL, per-route settings, cost and counts."""

from __future__ import annotations

import hashlib

from gateway.middleware import cache as cache_module

from ..fake_upstream import Behaviour
from ..cli_runner import run_cli
from ..inprocess_gateway import poll

KEY_A, KEY_B, KEY_C = "cache-key-a-123", "cache-key-b-456", "cache-key-c-789"
KEY_D = "cache-key-d-000"  # its namespace looks like team-a's narrowed by a header


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


CONFIG = f"""
version: 1
providers:
  demo: {{type: mock}}
pricing:
  "demo/priced": {{input: 1000, output: 1000}}
cache: {{mode: simple, ttl: 10m}}
routes:
  chat: {{target: {{provider: demo, model: m}}}}
  priced: {{target: {{provider: demo, model: priced}}}}
  fresh:
    cache: {{mode: off}}
    target: {{provider: demo, model: f}}
  short:
    cache: {{ttl: 60s, namespace: brief}}
    target: {{provider: demo, model: s}}
keys:
  a: {{key_sha256: {digest(KEY_A)}, metadata: {{cache_namespace: team-a}}}}
  b: {{key_sha256: {digest(KEY_B)}, metadata: {{cache_namespace: team-b}}}}
  c: {{key_sha256: {digest(KEY_C)}, metadata: {{cache_namespace: team-a}}}}
  d: {{key_sha256: {digest(KEY_D)}, metadata: {{cache_namespace: team-a/project-2}}}}
"""


def ask(gw, model: str = "chat", text: str = "hi", key: str = KEY_A, headers=None, **extra):
    return gw.post("/v1/chat/completions",
                   headers={"Authorization": f"Bearer {key}", **(headers or {})},
                   json={"model": model, "messages": [{"role": "user", "content": text}], **extra})


def test_repeat_is_a_hit_with_the_stored_answer(gateway_app):
    """The first answer is a miss and is stored; the same request again gets it back."""
    gw = gateway_app(CONFIG)
    first = ask(gw)
    again = ask(gw)
    assert first.headers["x-gateway-cache"] == "miss"
    assert again.headers["x-gateway-cache"] == "hit"
    assert again.json() == first.json()  # the mock's ids differ per answer: this one is stored
    assert again.headers["x-gateway-target"] == "demo/m"
    assert again.headers["x-gateway-attempts"] == "0"


def test_key_order_and_delivery_fields_do_not_change_the_key(gateway_app):
    """Key order, user, metadata and stream_options are not part of the key; temperature is."""
    gw = gateway_app(CONFIG)
    first = ask(gw, temperature=0.5, max_tokens=20)
    body = {"max_tokens": 20, "temperature": 0.5, "user": "someone", "metadata": {"x": "y"},
            "messages": [{"content": "hi", "role": "user"}], "model": "chat"}
    same = gw.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY_A}"})
    other = ask(gw, temperature=0.7, max_tokens=20)
    assert same.headers["x-gateway-cache"] == "hit" and same.json()["id"] == first.json()["id"]
    assert other.headers["x-gateway-cache"] == "miss" and other.json()["id"] != first.json()["id"]


def test_no_store_bypasses_and_no_cache_refreshes(gateway_app):
    """no-store: neither read nor written (skip); no-cache: a fresh answer replaces the entry."""
    gw = gateway_app(CONFIG)
    bypass = ask(gw, headers={"Cache-Control": "no-store"})
    first = ask(gw)
    assert bypass.headers["x-gateway-cache"] == "skip" and first.headers["x-gateway-cache"] == "miss"
    refreshed = ask(gw, headers={"Cache-Control": "no-cache"})
    after = ask(gw)
    assert refreshed.headers["x-gateway-cache"] == "miss"
    assert refreshed.json()["id"] != first.json()["id"]
    assert after.headers["x-gateway-cache"] == "hit" and after.json()["id"] == refreshed.json()["id"]


def test_namespaces_isolate_keys(gateway_app):
    """A key in another namespace never gets the answer; a key in the same one does; the
    namespace header narrows a key's namespace and cannot reach another key's."""
    gw = gateway_app(CONFIG)
    stored = ask(gw, key=KEY_A)
    other_key = ask(gw, key=KEY_B)
    same_namespace = ask(gw, key=KEY_C)
    escaping = ask(gw, key=KEY_B, headers={"x-gateway-cache-namespace": "team-a"})
    narrowed = ask(gw, key=KEY_A, headers={"x-gateway-cache-namespace": "project-1"})
    assert other_key.headers["x-gateway-cache"] == "miss"
    assert other_key.json()["id"] != stored.json()["id"]
    assert same_namespace.headers["x-gateway-cache"] == "hit"
    assert escaping.headers["x-gateway-cache"] == "miss"
    assert narrowed.headers["x-gateway-cache"] == "miss"
    # A namespace with a '/' of its own is not one a header can make: key a narrowing its
    # namespace to project-2 never reads key d's (team-a/project-2), nor the other way round.
    ask(gw, key=KEY_D, text="d's question")
    assert ask(gw, key=KEY_A, text="d's question", headers={
        "x-gateway-cache-namespace": "project-2"}).headers["x-gateway-cache"] == "miss"
    assert ask(gw, key=KEY_D, text="hi").headers["x-gateway-cache"] == "miss"


def test_route_settings_override_the_top_level(gateway_app):
    """`mode: off` on a route: skip, nothing stored; the cache header is on every answer."""
    gw = gateway_app(CONFIG)
    answers = [ask(gw, model="fresh") for _ in range(2)]
    assert [a.headers["x-gateway-cache"] for a in answers] == ["skip", "skip"]
    assert answers[0].json()["id"] != answers[1].json()["id"]


def test_entries_expire_after_their_ttl(gateway_app, monkeypatch):
    """An entry is served until its route's ttl has passed (60s on `short`, 10m elsewhere)."""
    gw = gateway_app(CONFIG)
    now = [1_000_000.0]
    monkeypatch.setattr(cache_module, "clock", lambda: now[0])
    short, long = ask(gw, model="short"), ask(gw)
    now[0] += 59
    assert ask(gw, model="short").headers["x-gateway-cache"] == "hit"
    now[0] += 2
    expired = ask(gw, model="short")
    assert expired.headers["x-gateway-cache"] == "miss" and expired.json()["id"] != short.json()["id"]
    assert ask(gw).json()["id"] == long.json()["id"]


def test_only_complete_successful_answers_are_stored(gateway_app, upstream):
    """An error, an answer without a finish reason and a stream cut short are not stored:
    the next request goes upstream again; a complete answer then is."""
    gw = gateway_app(f"""
version: 1
providers:
  up: {{type: openai-compatible, base_url: "{upstream.base_url}", api_key: k}}
cache: {{mode: simple}}
defaults: {{retry: {{attempts: 1}}}}
routes:
  chat: {{target: {{provider: up, model: u}}}}
""")
    unfinished = ('{"id": "x", "object": "chat.completion", "created": 1, "model": "u", "choices":'
                  ' [{"index": 0, "message": {"role": "assistant", "content": "half"},'
                  ' "finish_reason": null}]}')
    upstream.script("u", 500, Behaviour(body=unfinished), Behaviour(fail_after_chunks=1))
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    assert gw.post("/v1/chat/completions", json=body).status_code == 500
    assert gw.post("/v1/chat/completions", json=body).headers["x-gateway-cache"] == "miss"
    with gw.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as cut:
        assert "error" in cut.read().decode()
    complete = gw.post("/v1/chat/completions", json=body)
    hit = gw.post("/v1/chat/completions", json=body)
    assert complete.headers["x-gateway-cache"] == "miss" and hit.headers["x-gateway-cache"] == "hit"
    assert len(upstream.requests) == 4


def test_hits_cost_nothing_and_are_counted(gateway_app):
    """A hit is recorded in usage at no cost (target "cache"); /admin/cache and /metrics count
    hits, misses and what the hits saved."""
    gw = gateway_app(CONFIG)
    for _ in range(3):
        ask(gw, model="priced")
    rows = poll(lambda: gw.get("/admin/usage?group_by=route,target").json()["usage"],
                lambda rows: sum(r["requests"] for r in rows) == 3, what="usage not written")
    by_target = {r["target"]: r for r in rows}
    assert by_target["cache"]["requests"] == 2 and by_target["cache"]["cost_usd"] == 0
    assert by_target["cache"]["prompt_tokens"] == 0
    paid = by_target["demo/priced"]
    assert paid["requests"] == 1 and paid["cost_usd"] > 0
    report = gw.get("/admin/cache").json()
    assert report["backend"] == "sqlite" and report["namespaces"] == [
        {"namespace": "team-a", "hits": 2, "misses": 1, "saved_tokens": report["namespaces"][0]["saved_tokens"],
         "saved_usd": report["namespaces"][0]["saved_usd"]}]
    assert report["namespaces"][0]["saved_usd"] > 0
    metrics = gw.get("/metrics").text
    assert 'gateway_cache_requests_total{namespace="team-a",result="hit"} 2.0' in metrics
    assert 'gateway_cache_requests_total{namespace="team-a",result="miss"} 1.0' in metrics
    saved = paid["prompt_tokens"] + paid["completion_tokens"]
    assert f'gateway_cache_saved_tokens_total{{namespace="team-a"}} {2 * saved}.0' in metrics


def test_config_without_cache_has_no_cache_middleware(gateway_app):
    """With the cache off everywhere the request path has no cache layer (no header)."""
    gw = gateway_app(CONFIG.replace("cache: {mode: simple, ttl: 10m}", "")
                     .replace("cache: {ttl: 60s, namespace: brief}", "cache: {mode: off}"))
    r = ask(gw)
    assert r.status_code == 200 and "x-gateway-cache" not in r.headers


def test_cache_stats_and_clear_commands(gateway_app):
    """`gateway cache stats` shows entries and counts per namespace once written;
    `gateway cache clear --namespace N` empties that namespace only."""
    gw = gateway_app(CONFIG)
    ask(gw, key=KEY_A), ask(gw, key=KEY_A), ask(gw, key=KEY_B)
    config = str(gw.config_path)
    rows = poll(lambda: run_cli("cache", "stats", "--json", "--config", config).json,
                lambda rows: sum(r["hits"] + r["misses"] for r in rows) == 3,
                what="cache counts not written")
    by_ns = {r["namespace"]: r for r in rows}
    assert by_ns["team-a"]["entries"] == 1 and by_ns["team-a"]["hits"] == 1
    assert by_ns["team-b"]["misses"] == 1 and by_ns["team-b"]["bytes"] > 0
    cleared = run_cli("cache", "clear", "--namespace", "team-a", "--config", config)
    assert cleared.code == 0 and "deleted 1 cached answer from namespace 'team-a'" in cleared.out
    after = run_cli("cache", "stats", "--json", "--config", config).json
    assert {r["namespace"]: r["entries"] for r in after} == {"team-a": 0, "team-b": 1}


def test_no_secret_or_key_in_the_cache_file(gateway_app, upstream, tmp_path):
    """cache.db holds answers: neither the caller's virtual key (raw or hashed) nor the
    provider's API key."""
    secret = "sk-provider-secret-0987654321"
    gw = gateway_app(f"""
version: 1
server: {{data_dir: {tmp_path / 'data'}}}
providers:
  up: {{type: openai-compatible, base_url: "{upstream.base_url}", api_key: {secret}}}
cache: {{mode: simple}}
routes:
  chat: {{target: {{provider: up, model: u}}}}
keys:
  a: {{key_sha256: {digest(KEY_A)}}}
""")
    assert ask(gw).headers["x-gateway-cache"] == "miss"
    assert upstream.requests[0].headers["Authorization"] == f"Bearer {secret}"
    db = tmp_path / "data" / "cache.db"
    assert ask(gw).headers["x-gateway-cache"] == "hit"
    gw.stop()  # everything written and the file closed
    raw = b"".join(p.read_bytes() for p in db.parent.glob("cache.db*"))
    assert b"fake answer from u" in raw
    for needle in (secret, KEY_A, digest(KEY_A)):
        assert needle.encode() not in raw
