"""Auth and exposure (issue 11, items 1-5): the promises an attacker tests first.

Real HTTP against the real app, in process (httpx's ASGITransport around create_app). The
Reloader is told where the server listens (``bind_host``): nothing here binds a socket.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from gateway.cli import main as cli_main
from gateway.config.compiler import Runtime, compile_bytes
from gateway.errors import ConfigErrors
from gateway.keys.store import KeyStore, keystore_path
from gateway.server.app import create_app
from gateway.server.reload import GraphHolder, Reloader
from gateway.server.versioning import Inputs, record_startup, startup_graph

TOKEN = "admin-secret-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
RESEARCH_KEY = "sk-research-0123456789"
RESEARCH_SHA = hashlib.sha256(RESEARCH_KEY.encode()).hexdigest()

OPEN = """\
version: 1
server: {admin_token: %s}
providers:
  demo: {type: mock}
routes:
  chat: {target: {provider: demo, model: m}}
  secret-internal: {target: {provider: demo, model: m}}
""" % TOKEN

PROTECTED = OPEN + f"""\
keys:
  research:
    key_sha256: {RESEARCH_SHA}
    routes: [chat]
"""


def app_for(path: Path, bind_host: str = "127.0.0.1") -> tuple[httpx.AsyncClient, Reloader]:
    """The app as `gateway serve` builds it (one runtime; the start-up version recorded)."""
    runtime = Runtime()
    graph, loaded = startup_graph(str(path), runtime)
    graph = record_startup(graph, loaded)
    reloader = Reloader(str(path), runtime, GraphHolder(graph), inputs=Inputs.of(loaded),
                        bind_host=bind_host)
    app = create_app(reloader, watch_config=False)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                               base_url="http://127.0.0.1:8080")
    return client, reloader


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def chat(model: str = "chat", key: str | None = None, **headers: str) -> dict:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return {"json": {"model": model, "messages": [{"role": "user", "content": "hi"}]},
            "headers": headers}


# -- 1. revoking the last key ---------------------------------------------------------------


async def test_revoking_the_last_key_keeps_auth_on(tmp_path: Path):
    """POST /admin/keys then DELETE: no key, the revoked key and garbage all get 401."""
    client, _ = app_for(config(tmp_path, OPEN))
    async with client:
        assert (await client.post("/v1/chat/completions", **chat())).status_code == 200
        created = await client.post("/admin/keys", json={"name": "only"}, headers=ADMIN)
        assert created.status_code == 201
        raw = created.json()["key"]
        assert (await client.post("/v1/chat/completions", **chat(key=raw))).status_code == 200
        assert (await client.post("/v1/chat/completions", **chat())).status_code == 401
        assert (await client.delete("/admin/keys/only", headers=ADMIN)).status_code == 200
        for key in (None, raw, "garbage"):
            r = await client.post("/v1/chat/completions", **chat(key=key))
            assert r.status_code == 401, (key, r.text)
            assert r.json()["error"]["type"] == "authentication_error"
        models = await client.get("/v1/models")
        assert models.status_code == 401


async def test_revoking_the_last_cli_key_keeps_auth_on(tmp_path: Path, capsys):
    """`gateway keys create` then `revoke`: the gateway keeps requiring a key."""
    path = config(tmp_path, OPEN)
    assert cli_main(["keys", "create", "cli-key", "--config", str(path)]) == 0
    raw = capsys.readouterr().out.strip()
    client, _ = app_for(path)
    async with client:
        assert (await client.post("/v1/chat/completions", **chat(key=raw))).status_code == 200
        assert cli_main(["keys", "revoke", "cli-key", "--config", str(path)]) == 0
        for key in (None, raw, "garbage"):
            r = await client.post("/v1/chat/completions", **chat(key=key))
            assert r.status_code == 401, (key, r.text)


# -- 2. every reload gets the bind check ----------------------------------------------------


async def test_reload_that_drops_keys_and_token_on_a_public_bind_is_rejected(tmp_path: Path):
    """Bound beyond loopback, a reload without admin_token and keys is rejected: the last
    good config keeps serving, the reason is FILE:LINE:COL, counted and shown."""
    path = config(tmp_path, PROTECTED)
    client, reloader = app_for(path, bind_host="0.0.0.0")
    async with client:
        path.write_text("version: 1\nserver: {port: 8080}\nproviders: {demo: {type: mock}}\n"
                        "routes:\n  chat: {target: {provider: demo, model: m}}\n")
        r = await client.post("/admin/reload", headers=ADMIN)
        assert r.status_code == 422, r.text
        assert r.json()["result"] == "rejected"
        errors = r.json()["errors"]
        assert any(e.startswith(f"{path}:2:") and "server.admin_token" in e for e in errors)
        assert any("virtual keys" in e for e in errors)
        shown = (await client.get("/admin/config", headers=ADMIN)).json()
        assert shown["version"] == reloader.holder.current.version
        assert shown["reloads"]["rejected"] == 1
        assert shown["last_rejection"]["errors"]
        assert (await client.post("/v1/chat/completions", **chat())).status_code == 401
        assert (await client.post("/v1/chat/completions",
                                  **chat(key=RESEARCH_KEY))).status_code == 200
    assert reloader.holder.current.requires_key


async def test_reload_on_loopback_may_drop_keys(tmp_path: Path):
    """On loopback the same reload is applied: the bind check is about exposure only."""
    path = config(tmp_path, PROTECTED)
    client, _ = app_for(path, bind_host="127.0.0.1")
    async with client:
        path.write_text(OPEN)
        r = await client.post("/admin/reload", headers=ADMIN)
        assert r.json()["result"] == "applied", r.text
        assert (await client.post("/v1/chat/completions", **chat())).status_code == 200


async def test_rollback_to_an_open_version_on_a_public_bind_is_rejected(tmp_path: Path):
    """A version recorded while the gateway listened on loopback cannot be rolled back to
    once it listens beyond it."""
    path = config(tmp_path, OPEN)
    local, _ = app_for(path, bind_host="127.0.0.1")  # records version 1, open
    async with local:
        path.write_text(PROTECTED)
        assert (await local.post("/admin/reload", headers=ADMIN)).json()["result"] == "applied"
    public, reloader = app_for(path, bind_host="0.0.0.0")
    async with public:
        r = await public.post("/admin/rollback", json={"version": 1}, headers=ADMIN)
        assert r.status_code == 422, r.text
        assert any("virtual keys" in e for e in r.json()["errors"])
        assert (await public.post("/v1/chat/completions", **chat())).status_code == 401
    assert reloader.counts["rejected"] == 1 and reloader.holder.current.requires_key


# -- 3. auth before routing -----------------------------------------------------------------


async def test_unauthenticated_caller_gets_401_before_any_route_hint(tmp_path: Path):
    """No key: 401 whatever the model, never a 404 naming a route; the same for a request
    that would fail later (bad metadata header)."""
    client, _ = app_for(config(tmp_path, PROTECTED))
    async with client:
        for model in ("secret-interna", "chat", "nope"):
            r = await client.post("/v1/chat/completions", **chat(model))
            assert r.status_code == 401, (model, r.text)
            assert "secret" not in r.text and "did you mean" not in r.text
        r = await client.post("/v1/chat/completions",
                              **chat("chat", **{"x-gateway-metadata": "not json"}))
        assert r.status_code == 401


async def test_did_you_mean_suggests_only_routes_the_key_may_use(tmp_path: Path):
    """A known key asking for an unknown model gets 404, with hints among its own routes."""
    client, _ = app_for(config(tmp_path, PROTECTED))
    async with client:
        r = await client.post("/v1/chat/completions", **chat("secret-interna", key=RESEARCH_KEY))
        assert r.status_code == 404
        assert "secret-internal" not in r.text
        r = await client.post("/v1/chat/completions", **chat("chta", key=RESEARCH_KEY))
        assert r.status_code == 404 and "'chat'" in r.text


async def test_metrics_need_the_admin_token_and_probes_stay_open(tmp_path: Path):
    """/metrics answers 401 without the admin token; /healthz and /readyz need nothing."""
    client, _ = app_for(config(tmp_path, PROTECTED))
    async with client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
                ).status_code == 401
        r = await client.get("/metrics", headers=ADMIN)
        assert r.status_code == 200 and "gateway_config_version" in r.text
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


# -- 5. no trailing-slash redirects ---------------------------------------------------------


@pytest.mark.parametrize("method,path", [("POST", "/v1/chat/completions/"),
                                         ("GET", "/v1/models/"), ("GET", "/admin/config/")])
async def test_no_trailing_slash_redirects(tmp_path: Path, method: str, path: str):
    """A trailing slash is a 404 in OpenAI's shape, never a redirect built from Host."""
    client, _ = app_for(config(tmp_path, OPEN))
    async with client:
        r = await client.request(method, path, json={}, headers={"Host": "127.0.0.1:8080"})
    assert r.status_code == 404, r.text
    assert "location" not in r.headers
    assert set(r.json()["error"]) == {"message", "type", "code", "param"}


# -- 4. cross-site and DNS-rebinding requests -----------------------------------------------


async def test_cross_site_rollback_with_text_plain_is_refused(tmp_path: Path):
    """The attack from the issue: a text/plain POST /admin/rollback from a foreign Origin."""
    client, reloader = app_for(config(tmp_path, OPEN))
    async with client:
        r = await client.post("/admin/rollback", content=b'{"steps": 1}', headers={
            **ADMIN, "Content-Type": "text/plain", "Origin": "http://evil.example"})
        assert r.status_code in (403, 415), r.text
        r = await client.post("/admin/rollback", content=b'{"steps": 1}',
                              headers={**ADMIN, "Content-Type": "text/plain"})
        assert r.status_code == 415
        assert r.json()["error"]["code"] == "unsupported_media_type"
    assert reloader.counts == {"applied": 0, "unchanged": 0, "rejected": 0}


@pytest.mark.parametrize("path,content_type,status", [
    ("/v1/chat/completions", "text/plain", 415),
    ("/v1/chat/completions", "application/x-www-form-urlencoded", 415),
    ("/v1/chat/completions", None, 415),
    ("/v1/chat/completions", "application/json; charset=utf-8", 200),
    ("/v1/audio/transcriptions", "application/json", 415),
    ("/admin/keys", "text/plain", 415),
    ("/admin/keys", "application/json", 400),  # past the guard: the endpoint's own check
])
async def test_post_bodies_must_be_json(tmp_path: Path, path: str, content_type: str | None,
                                        status: int):
    """POST bodies are application/json (multipart for transcriptions): 415 otherwise."""
    client, _ = app_for(config(tmp_path, OPEN))
    body = b'{"model": "chat", "name": "k", "messages": [{"role": "user", "content": "hi"}]}'
    headers = dict(ADMIN)
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with client:
        r = await client.post(path, content=body, headers=headers)
    assert r.status_code == status, r.text
    if status == 415:
        assert set(r.json()["error"]) == {"message", "type", "code", "param"}


async def test_admin_calls_from_a_foreign_origin_are_refused(tmp_path: Path):
    """Admin calls with a foreign Origin get 403 (with or without a body); the gateway's own
    origin and no Origin at all are fine; the OpenAI API is not an admin call."""
    client, reloader = app_for(config(tmp_path, OPEN))
    foreign = {**ADMIN, "Origin": "http://evil.example"}
    async with client:
        assert (await client.post("/admin/reload", headers=foreign)).status_code == 403
        assert (await client.get("/admin/config", headers=foreign)).status_code == 403
        assert (await client.delete("/admin/keys/x", headers=foreign)).status_code == 403
        r = await client.post("/admin/reload", headers={**ADMIN, "Origin": "null"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin_admin"
        own = {**ADMIN, "Origin": "http://127.0.0.1:8080"}
        assert (await client.get("/admin/config", headers=own)).status_code == 200
        assert (await client.get("/admin/config", headers=ADMIN)).status_code == 200
        r = await client.post("/v1/chat/completions", **chat(Origin="http://app.example"))
        assert r.status_code == 200
    assert reloader.counts["applied"] + reloader.counts["unchanged"] == 0


@pytest.mark.parametrize("path", ["/v1/files", "/v1/audio/transcriptions"])
async def test_cross_site_multipart_posts_are_refused(tmp_path: Path, path: str):
    """A web page can POST multipart/form-data to a loopback gateway without a CORS preflight
    (it is a form): on a gateway without keys that uploaded files, or had a transcription
    run with the provider's key. A multipart POST whose Origin is another site is a 403;
    without an Origin (SDKs, curl) or from the gateway's own origin it goes on."""
    (tmp_path / "data").mkdir()
    text = OPEN.replace(
        "server: {admin_token: %s}" % TOKEN,
        "server: {admin_token: %s, data_dir: \"%s\"}" % (TOKEN, tmp_path / "data"))
    client, _ = app_for(config(tmp_path, text))
    form = {"data": {"purpose": "user_data", "model": "chat"},
            "files": {"file": ("a.txt", b"hello")}}
    async with client:
        for origin in ("http://evil.example", "null", "http://127.0.0.1:8080.evil.example"):
            r = await client.post(path, headers={"Origin": origin}, **form)
            assert r.status_code == 403, (origin, r.text)
            assert r.json()["error"]["code"] == "cross_origin_post"
        r = await client.post(path, headers={"Sec-Fetch-Site": "cross-site"}, **form)
        assert r.status_code == 403, r.text
        for headers in ({}, {"Origin": "http://127.0.0.1:8080"}):
            r = await client.post(path, headers=headers, **form)
            assert r.status_code != 403, (headers, r.text)


async def test_a_root_path_keeps_admin_calls_same_origin(tmp_path: Path):
    """Served under a prefix (an ASGI server's root_path), /prefix/admin/... is still an admin
    call: a foreign Origin gets 403 (the check looked at the request path, not the app's)."""
    _, reloader = app_for(config(tmp_path, OPEN))
    app = create_app(reloader, watch_config=False)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, root_path="/gw"),
                               base_url="http://127.0.0.1:8080")
    foreign = {**ADMIN, "Origin": "http://evil.example"}
    async with client:
        refused = await client.post("/gw/admin/reload", headers=foreign)
        assert refused.status_code == 403, refused.text
        assert (await client.get("/gw/admin/config", headers=ADMIN)).status_code == 200
    assert reloader.counts["applied"] + reloader.counts["unchanged"] == 0


@pytest.mark.parametrize("host,status", [
    ("evil.example", 421), ("evil.example:8080", 421), ("127.0.0.1.evil.example", 421),
    ("127.0.0.1:8080", 200), ("localhost", 200), ("LOCALHOST:9", 200), ("[::1]:8080", 200),
    ("127.0.0.2:8080", 200),  # the bind address
])
async def test_host_must_be_loopback_or_the_bind_address_by_default(tmp_path: Path, host: str,
                                                                     status: int):
    """Without server.allowed_hosts, only loopback names and the bind address are answered
    (DNS rebinding); probes answer to any name."""
    client, _ = app_for(config(tmp_path, OPEN), bind_host="127.0.0.2")
    async with client:
        r = await client.get("/v1/models", headers={"Host": host})
        assert r.status_code == status, r.text
        if status == 421:
            assert r.json()["error"]["code"] == "host_not_allowed"
            assert "server.allowed_hosts" in r.json()["error"]["message"]
            r = await client.post("/admin/reload", headers={**ADMIN, "Host": host})
            assert r.status_code == 421
        for probe in ("/healthz", "/readyz"):
            assert (await client.get(probe, headers={"Host": host})).status_code == 200


async def test_allowed_hosts_adds_names_and_reloads(tmp_path: Path):
    """server.allowed_hosts adds names (any port) and name:port pairs; "*" allows any; a
    reload changes the set."""
    text = OPEN.replace("server: {", 'server: {allowed_hosts: [gw.example.com, '
                                     '"api.example.com:8443"], ')
    path = config(tmp_path, text)
    client, _ = app_for(path)
    async with client:
        async def status(host: str) -> int:
            return (await client.get("/v1/models", headers={"Host": host})).status_code

        assert await status("gw.example.com:1234") == 200
        assert await status("GW.example.com.") == 200
        assert await status("api.example.com:8443") == 200
        assert await status("api.example.com") == 421
        assert await status("localhost:8080") == 200
        path.write_text(OPEN.replace("server: {", 'server: {allowed_hosts: ["*"], '))
        r = await client.post("/admin/reload", headers=ADMIN)
        assert r.json()["result"] == "applied", r.text
        assert await status("anything.example") == 200


def test_allowed_hosts_is_validated(tmp_path: Path):
    """A URL in allowed_hosts is a config error with its position."""
    text = "version: 1\nserver:\n  allowed_hosts: [\"https://gw.example.com/\"]\n"
    with pytest.raises(ConfigErrors) as caught:
        compile_bytes(text.encode(), str(tmp_path / "gateway.yaml"), version=1)
    assert any(e.line == 3 and "allowed_hosts" in e.path for e in caught.value.errors)


# -- 16. key input is checked like keys: in gateway.yaml ------------------------------------


@pytest.mark.parametrize("body,field", [
    ({"name": "k", "limits": {"requests_per_minut": 5}}, "limits.requests_per_minut"),
    ({"name": "k", "budget": {"budget": {"usd": 5}}}, "budget.budget"),
    ({"name": "k", "rpm": "lots"}, "rpm"),
    ({"name": "k", "limits": {"requests_per_minute": "lots"}}, "limits.requests_per_minute"),
    ({"name": "k", "rpm": 0}, "rpm"),
    ({"name": "k", "tpm": -5}, "tpm"),
    ({"name": "k", "budget": -1}, "budget"),
    ({"name": "k", "budget": {"usd": 0}}, "budget.usd"),
    ({"name": "k", "routes": ["chta"]}, "routes[0]"),
    ({"name": "k", "expires": "someday"}, "expires"),
    ({"name": "k", "colour": "red"}, "colour"),
    ({"routes": ["chat"]}, "body"),
    ([1, 2], "body"),
])
async def test_admin_key_input_is_checked_like_the_yaml_schema(tmp_path: Path, body, field: str):
    """Bad key input is 400 with field errors in OpenAI's shape; nothing is stored."""
    client, _ = app_for(config(tmp_path, OPEN))
    async with client:
        r = await client.post("/admin/keys", json=body, headers=ADMIN)
        assert r.status_code == 400, r.text
        assert set(r.json()["error"]) == {"message", "type", "code", "param"}
        assert r.json()["error"]["code"] == "invalid_key_request"
        assert field in [e["field"] for e in r.json()["errors"]], r.json()
        assert (await client.get("/admin/keys", headers=ADMIN)).json()["keys"] == []
        assert (await client.post("/v1/chat/completions", **chat())).status_code == 200


async def test_admin_key_in_the_yaml_shape_is_enforced(tmp_path: Path):
    """A key with `limits` and `budget` as in gateway.yaml is stored whole and enforced."""
    client, _ = app_for(config(tmp_path, OPEN))
    async with client:
        r = await client.post("/admin/keys", headers=ADMIN, json={
            "name": "svc", "routes": ["chat"], "limits": {"requests_per_minute": 2},
            "budget": {"usd": 5, "period": "daily", "alert_at": 0.8}, "metadata": {"team": "x"}})
        assert r.status_code == 201, r.text
        assert r.json()["limits"] == {"requests_per_minute": 2}
        assert r.json()["budget"] == {"usd": 5, "period": "daily", "alert_at": 0.8}
        raw = r.json()["key"]
        codes = [(await client.post("/v1/chat/completions", **chat(key=raw))).status_code
                 for _ in range(3)]
        assert codes == [200, 200, 429]


async def test_keys_list_survives_rows_stored_unchecked(tmp_path: Path, capsys):
    """Rows an older version stored without checks (`rpm: "lots"`, a budget nested wrongly)
    are listed, not a crash."""
    path = config(tmp_path, OPEN)
    store = KeyStore(keystore_path(str(tmp_path / ".gateway")))
    store.create("lots", limits={"requests_per_minute": "lots"},
                 budget={"usd": "lots", "period": 5})
    store.create("nested", budget={"usd": {"usd": 5}, "period": "monthly"})
    for fmt in ("table", "json"):
        assert cli_main(["keys", "list", "--format", fmt, "--config", str(path)]) == 0
        out = capsys.readouterr().out
        assert "lots" in out and "nested" in out


async def test_key_stored_unchecked_is_refused_not_a_500(tmp_path: Path):
    """A key an older version stored without checks gets 403 saying what to do, not a 500."""
    path = config(tmp_path, OPEN)
    store = KeyStore(keystore_path(str(tmp_path / ".gateway")))
    lots, _ = store.create("lots", limits={"requests_per_minute": "lots"})
    nested, _ = store.create("nested", budget={"usd": {"usd": 5}, "period": "monthly"})
    client, _ = app_for(path)
    async with client:
        for raw, name in ((lots, "lots"), (nested, "nested")):
            r = await client.post("/v1/chat/completions", **chat(key=raw))
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == "invalid_key_record"
            assert f"key '{name}'" in r.text and "create it again" in r.text


@pytest.mark.parametrize("query", ["limit=99999999999999999999999", "limit=0", "limit=-1"])
async def test_huge_version_limit_is_400(tmp_path: Path, query: str):
    client, _ = app_for(config(tmp_path, OPEN))
    async with client:
        r = await client.get(f"/admin/config/versions?{query}", headers=ADMIN)
    assert r.status_code == 400, r.text


async def test_huge_version_number_is_404(tmp_path: Path):
    client, _ = app_for(config(tmp_path, OPEN))
    async with client:
        for number in ("99999999999999999999999", str(2**63), str(2**63 - 1)):
            r = await client.get(f"/admin/config/versions/{number}", headers=ADMIN)
            assert r.status_code == 404, (number, r.text)
        for body in ({"version": 2**63 - 1}, {"steps": 2**62}):
            r = await client.post("/admin/rollback", json=body, headers=ADMIN)
            assert r.status_code in (400, 404), (body, r.text)
        r = await client.post("/admin/rollback", content=b'{"version": 99999999999999999999999}',
                              headers={**ADMIN, "Content-Type": "application/json"})
        assert r.status_code == 400, r.text
