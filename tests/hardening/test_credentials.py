"""Credentials never leave their host: promises of issue 11, items 6-11 and 15, each against the
real app and real HTTP upstreams on loopback."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from .. import loopback
from ..background_app import free_port
from .upstreams import Scripted, chat, gateway


def redirecting_to(url: str, status: int = 302) -> Scripted:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": url})
    return Scripted(answer)


def html_page(content_type: str = "text/html; charset=utf-8") -> Scripted:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=b"<html><body>Sign in to the Wi-Fi</body></html>",
                            headers={"Content-Type": content_type})
    return Scripted(answer)


# -- 6. upstream redirects are never followed ------------------------------------------------

REDIRECT_CONFIG = """
version: 1
server: {{data_dir: data}}
defaults: {{retry: {{attempts: 1}}}}
providers:
  up:
    type: {type}
    base_url: {base_url}
    api_key: key-for-up-only-1234
    headers: {{x-team-secret: team-secret-5678}}
  demo: {{type: mock}}
routes:
  direct: {{target: {{provider: up, model: m}}}}
  guarded:
    fallback:
      targets:
        - target: {{provider: up, model: m}}
        - target: {{provider: demo, model: backup}}
"""


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("kind", ["openai-compatible", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_redirects_are_never_followed(tmp_path, status, kind, stream):
    """A 3xx from the upstream is an upstream error naming the host it pointed at; the second
    host never hears from the gateway, so the key and the configured headers stay home."""
    with Scripted() as elsewhere:
        # "localhost" makes it another host as far as the client is concerned
        target = f"http://localhost:{elsewhere.port}/v1/chat/completions?token=t0ken"
        with redirecting_to(target, status) as up:
            config = REDIRECT_CONFIG.format(type=kind, base_url=up.base_url)
            async with gateway(tmp_path, config) as (client, _):
                r = await client.post("/v1/chat/completions", json=chat("direct", stream))
        assert len(up.seen) == 1
    assert elsewhere.seen == []
    assert r.status_code == 502
    message = r.json()["error"]["message"]
    assert f"upstream answered {status} redirect to localhost:{elsewhere.port}" in message
    assert "does not follow redirects" in message and "fix base_url" in message
    assert "t0ken" not in message


async def test_a_redirect_falls_back_to_the_next_target(tmp_path):
    """The redirect is a failed attempt like a 502: the fallback answers."""
    with Scripted() as elsewhere, redirecting_to(elsewhere.base_url + "/chat/completions") as up:
        async with gateway(tmp_path, REDIRECT_CONFIG.format(
                type="openai-compatible", base_url=up.base_url)) as (client, _):
            r = await client.post("/v1/chat/completions", json=chat("guarded"))
    assert r.status_code == 200 and r.headers["x-gateway-target"] == "demo/backup"
    assert elsewhere.seen == []


async def test_health_checks_never_follow_redirects(tmp_path):
    """The active health check reports a redirect as unhealthy and does not follow it."""
    with Scripted() as elsewhere, redirecting_to(f"http://localhost:{elsewhere.port}/v1/models") as up:
        async with gateway(tmp_path, REDIRECT_CONFIG.format(
                type="openai-compatible", base_url=up.base_url)) as (_, graph):
            error = await graph.providers["up"].check_health(5)
    assert error is not None and f"302 redirect to localhost:{elsewhere.port}" in error
    assert up.seen[0].path == "/v1/models" and elsewhere.seen == []


# -- 15. a 2xx that is not what was asked for is an upstream error --------------------------

HTML_CONFIG = """
version: 1
server: {{data_dir: data}}
defaults:
  retry: {{attempts: 1}}
  circuit_breaker: {{failure_threshold: 3, min_requests: 100, cooldown: 60s}}
providers:
  portal: {{type: openai-compatible, base_url: {base_url}}}
  demo: {{type: mock}}
routes:
  direct: {{target: {{provider: portal, model: m}}}}
  retried: {{target: {{provider: portal, model: m, retry: {{attempts: 2, backoff: constant, base: 1ms}}}}}}
  guarded:
    fallback:
      targets:
        - target: {{provider: portal, model: m}}
        - target: {{provider: demo, model: backup}}
"""


@pytest.mark.parametrize("stream", [False, True])
async def test_an_html_200_is_an_upstream_error_not_a_completion(tmp_path, stream):
    """An HTML page answered with 200 (a captive portal, a wrong base_url) is a 502 that says
    what came back, never relayed as a successful completion."""
    with html_page() as portal:
        async with gateway(tmp_path, HTML_CONFIG.format(base_url=portal.base_url)) as (client, _):
            r = await client.post("/v1/chat/completions", json=chat("direct", stream))
    assert r.status_code == 502
    expected = "text/event-stream" if stream else "JSON"
    assert f"upstream answered 200 with text/html where {expected} was expected" in \
        r.json()["error"]["message"]


async def test_an_html_200_is_retried_falls_back_and_opens_the_breaker(tmp_path):
    """It is a server-class failure: retried, fallen back from, counted by the breaker."""
    with html_page() as portal:
        async with gateway(tmp_path, HTML_CONFIG.format(base_url=portal.base_url)) as (client, _):
            retried = await client.post("/v1/chat/completions", json=chat("retried"))
            assert len(portal.seen) == 2 and retried.headers["x-gateway-attempts"] == "2"
            guarded = await client.post("/v1/chat/completions", json=chat("guarded"))
            assert guarded.status_code == 200
            assert guarded.headers["x-gateway-target"] == "demo/backup"
            blocked = await client.post("/v1/chat/completions", json=chat("direct"))
    assert blocked.status_code == 503 and "circuit open" in blocked.json()["error"]["message"]
    assert len(portal.seen) == 3


async def test_json_with_a_plain_text_content_type_is_still_an_answer(tmp_path):
    """Only the body decides: a JSON answer labelled text/plain is relayed."""
    async def answer(request):
        return web.Response(text='{"id": "x", "choices": []}', content_type="text/plain")
    with Scripted(answer) as up:
        async with gateway(tmp_path, HTML_CONFIG.format(base_url=up.base_url)) as (client, _):
            r = await client.post("/v1/chat/completions", json=chat("direct"))
    assert r.status_code == 200 and r.json() == {"id": "x", "choices": []}


# -- 7. upstream error text is scrubbed of credentials ---------------------------------------

ECHO_CONFIG = """
version: 1
server: {{data_dir: data}}
defaults: {{retry: {{attempts: 1}}}}
providers:
  echo:
    type: openai-compatible
    base_url: {base_url}
    api_key: ${{ECHO_KEY}}
    headers: {{x-team-secret: team-secret-5678}}
routes:
  direct: {{target: {{provider: echo, model: m}}}}
"""

ECHO_KEY = "echo-key-abcdef123456"
LEAKS = (ECHO_KEY, "team-secret-5678", "sk-proj-unrelated0123456789", "opaque.token.value")


def echoing(status: int, *, stream_first: bool = False) -> Scripted:
    """An upstream that quotes the request's credentials (and other token-shaped text) back
    in its error, as some proxies and misconfigured servers do."""
    async def answer(request: web.Request) -> web.StreamResponse:
        text = (f"denied: Authorization={request.headers.get('Authorization')} "
                f"x-team-secret={request.headers.get('x-team-secret')} "
                "other=sk-proj-unrelated0123456789 and Bearer opaque.token.value")
        return web.json_response({"error": {"message": text, "type": "x", "code": None}},
                                 status=status)
    return Scripted(answer)


@pytest.mark.parametrize("status", [401, 400, 429, 500, 503])
async def test_upstream_error_text_never_carries_a_credential(tmp_path, monkeypatch, status):
    """Whatever the upstream quotes back, the client's error and the request log show ***
    where a configured credential or a token-shaped string was."""
    monkeypatch.setenv("ECHO_KEY", ECHO_KEY)
    with echoing(status) as up, capture_logs() as logs:
        async with gateway(tmp_path, ECHO_CONFIG.format(base_url=up.base_url)) as (client, _):
            r = await client.post("/v1/chat/completions", json=chat("direct"))
    assert r.status_code == status
    assert up.seen[0].headers["Authorization"] == f"Bearer {ECHO_KEY}"  # it was sent
    logged = repr(logs)
    for secret in LEAKS:
        assert secret not in r.text and secret not in logged
    message = r.json()["error"]["message"]
    assert "Authorization=Bearer ***" in message and "x-team-secret=***" in message
    assert "denied" in logged


async def test_a_stream_error_after_the_first_byte_is_scrubbed_too(tmp_path, monkeypatch):
    """An Anthropic stream that fails midway with an error event quoting the key: the SSE error
    event the client gets and the request log show *** instead."""
    monkeypatch.setenv("ECHO_KEY", ECHO_KEY)

    def sse(name: str, data: dict) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    async def answer(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(sse("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
            "stop_reason": None, "usage": {"input_tokens": 1, "output_tokens": 0}}}))
        await resp.write(sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                     "content_block": {"type": "text", "text": ""}}))
        await resp.write(sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                     "delta": {"type": "text_delta", "text": "hi"}}))
        await resp.write(sse("error", {"type": "error", "error": {
            "type": "overloaded_error",
            "message": f"overloaded for x-api-key {request.headers.get('x-api-key')}"}}))
        await resp.write_eof()
        return resp

    with Scripted(answer) as up, capture_logs() as logs:
        config = ECHO_CONFIG.format(base_url=up.base_url).replace("openai-compatible", "anthropic")
        async with gateway(tmp_path, config) as (client, _):
            r = await client.post("/v1/chat/completions", json=chat("direct", stream=True))
    assert up.seen[0].headers["x-api-key"] == ECHO_KEY  # it was sent
    assert '"hi"' in r.text and "overloaded for x-api-key ***" in r.text
    assert ECHO_KEY not in r.text and ECHO_KEY not in repr(logs)


def test_every_configured_credential_is_scrubbed(tmp_path, monkeypatch):
    """The scrubber knows every credential of the config: keys, headers, Azure and AWS
    secrets, URL userinfo, the admin token, and values resolved from the vault."""
    from gateway.config.compiler import compile_bytes
    from gateway.vault import Vault

    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("GATEWAY_MASTER_KEY", key)
    Vault(str(tmp_path / "data"), {"GATEWAY_MASTER_KEY": key}).set("tenant", "vault-tenant-9999")
    config = """
version: 1
server: {data_dir: data, admin_token: admin-token-4242}
providers:
  oa: {type: openai, api_key: oa-key-111111, headers: {x-tenant: secret:tenant}}
  az: {type: azure-openai, base_url: "https://az.example", api_version: "2024-10-21",
       azure_ad_token: ad-token-222222}
  aws: {type: bedrock, region: eu-west-1, aws_access_key_id: AKIA33333333,
        aws_secret_access_key: aws-secret-444444, aws_session_token: aws-session-555555}
  local: {type: openai-compatible, base_url: "http://proxyuser:proxy-pass-666@127.0.0.1:9/v1"}
routes:
  r: {target: {provider: oa, model: m}}
"""
    path = tmp_path / "gateway.yaml"
    path.write_text(config)
    graph = compile_bytes(config.encode(), str(path))
    text = ("oa-key-111111 vault-tenant-9999 ad-token-222222 AKIA33333333 aws-secret-444444 "
            "aws-session-555555 proxy-pass-666 proxyuser:proxy-pass-666 admin-token-4242")
    assert graph.scrubber.text(text) == " ".join(["***"] * 9)


# -- 8. URL userinfo is a secret --------------------------------------------------------------

USERINFO_CONFIG = """
version: 1
server: {{data_dir: data}}
providers:
  local: {{type: openai-compatible, base_url: "http://proxyuser:proxy-pass-666@{host}/v1"}}
routes:
  r: {{target: {{provider: local, model: m}}}}
"""


async def test_url_userinfo_is_masked_in_admin_output(tmp_path):
    """A stored config version shows http://***@host, never the user and password."""
    async with gateway(tmp_path, USERINFO_CONFIG.format(host="127.0.0.1:9")) as (client, _):
        assert (await client.post("/admin/reload?force=1")).status_code == 200
        listed = (await client.get("/admin/config/versions")).json()
        number = listed["versions"][0]["number"]
        shown = (await client.get(f"/admin/config/versions/{number}")).text
    assert "proxy-pass-666" not in shown and "proxyuser" not in shown
    assert "http://***@127.0.0.1:9/v1" in shown


def test_url_userinfo_is_masked_in_gateway_diff_and_validate(tmp_path, capsys):
    """`gateway diff` shows the changed base_url with its userinfo masked; `gateway validate`
    quotes a bad base_url the same way."""
    from gateway.cli import main

    old, new, bad = tmp_path / "old.yaml", tmp_path / "new.yaml", tmp_path / "bad.yaml"
    old.write_text(USERINFO_CONFIG.format(host="127.0.0.1:9"))
    new.write_text(USERINFO_CONFIG.format(host="127.0.0.1:10"))
    bad.write_text(USERINFO_CONFIG.format(host="127.0.0.1:9").replace("http://", "ftp://"))
    assert main(["diff", str(new), "--against", str(old)]) == 1
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "proxy-pass-666" not in text and "proxyuser" not in text
    assert "http://***@127.0.0.1:10/v1" in text and "ftp://***@127.0.0.1:9/v1" in text


# -- 9. the data directory is private ----------------------------------------------------------

PRIVATE_CONFIG = """
version: 1
server: {data_dir: data}
providers:
  demo: {type: mock}
routes:
  r: {target: {provider: demo, model: m}}
"""


@pytest.fixture
def loose_umask():
    """The common default: new files world-readable unless the gateway says otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(folder) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.iterdir()]}


async def test_data_dir_is_0700_and_every_file_in_it_0600(tmp_path, monkeypatch, loose_umask):
    """Config versions, keys, usage and the vault: the folder 0700, each file (SQLite's WAL
    and SHM side files included) 0600."""
    from gateway.middleware.usage import usage_db, write_usage
    from gateway.vault import Vault

    key = base64.b64encode(os.urandom(32)).decode()
    data = tmp_path / "data"
    async with gateway(tmp_path, PRIVATE_CONFIG) as (client, _):
        assert (await client.post("/admin/reload?force=1")).status_code == 200
        assert (await client.post("/admin/keys", json={"name": "team"})).status_code in (200, 201)
    write_usage(usage_db(str(data)), {("2026-01-01", "team", "r", "demo/m"): [1, 2, 3, 0.1]})
    Vault(str(data), {"GATEWAY_MASTER_KEY": key}).set("tenant", "value")
    held = sqlite3.connect(data / "keys.db")  # a reader keeps the WAL side files in place
    held.execute("SELECT 1 FROM keys").fetchall()
    found = modes(data)
    held.close()
    assert {"gateway.db", "keys.db", "keys.db-wal", "usage.db", "vault.json"} <= set(found)
    assert found.pop("data") == 0o700
    assert found == {name: 0o600 for name in found}


async def test_existing_data_dir_and_databases_are_tightened_on_open(tmp_path, loose_umask):
    """A data dir made world-readable before (an older version, a loose umask) is made
    private when the gateway opens it."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    db = sqlite3.connect(data / "gateway.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    db.close()
    (data / "gateway.db-wal").write_bytes(b"")
    os.chmod(data, 0o755), os.chmod(data / "gateway.db", 0o644)
    os.chmod(data / "gateway.db-wal", 0o644)
    async with gateway(tmp_path, PRIVATE_CONFIG) as (client, _):
        assert (await client.post("/admin/reload?force=1")).status_code == 200
    found = modes(data)
    assert found.pop("data") == 0o700
    assert found == {name: 0o600 for name in found}


# -- 10. git never runs what the config's repository configures -------------------------------

GIT_CONFIG = PRIVATE_CONFIG


def trapped_repo(folder: Path) -> Path:
    """A repository holding gateway.yaml whose .git/config makes `git status` run a program
    (core.fsmonitor, and a clean filter for *.yaml); the program writes the returned marker."""
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True,
                       timeout=30)
    git("init", "-q", ".")
    git("config", "user.email", "t@example.com"), git("config", "user.name", "T")
    git("config", "commit.gpgsign", "false")
    (folder / "gateway.yaml").write_text(GIT_CONFIG)
    git("add", "gateway.yaml"), git("commit", "-q", "-m", "c1")
    marker = folder / "TRAP-RAN"
    trap = folder / "trap.sh"
    trap.write_text(f"#!/bin/sh\necho \"$0 $*\" >> '{marker}'\ncat\n")
    trap.chmod(0o755)
    git("config", "core.fsmonitor", str(trap))
    git("config", "filter.trap.clean", str(trap))
    git("config", "core.hooksPath", str(folder))
    (folder / ".gitattributes").write_text("*.yaml filter=trap\n")
    return marker


async def test_git_on_the_config_directory_runs_nothing_the_repository_configures(
        tmp_path, capsys, gateway_app):
    """Recording a version (serve, admin reload), `gateway history` and `gateway diff
    --against git:HEAD` ask git about the config's repository; the programs its .git/config
    names never run, and the commit and dirtiness are still right."""
    from gateway.cli import main
    from gateway.config.versions import VersionStore

    marker = trapped_repo(tmp_path)
    config = tmp_path / "gateway.yaml"
    gw = gateway_app(GIT_CONFIG)  # a start records version 1 with its git commit, as serve does
    gw.stop()
    async with gateway(tmp_path, GIT_CONFIG + "# edited\n") as (client, _):
        assert (await client.post("/admin/reload?force=1")).status_code == 200
    assert main(["history", "--config", str(config)]) == 0
    assert main(["diff", str(config), "--against", "git:HEAD"]) in (0, 1)
    capsys.readouterr()
    assert not marker.exists(), marker.read_text()
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    versions = VersionStore(str(tmp_path / "data")).list()
    assert [(v.git_commit, v.git_dirty) for v in sorted(versions, key=lambda v: v.number)] == [
        (head, False), (head, True)]


# -- 11. a gateway never calls itself ----------------------------------------------------------

SELF_CONFIG = """
version: 1
server: {{host: "{listen}", port: 8080, admin_token: t0ken-for-bind, data_dir: data}}
keys:
  k: {{key_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8}}
providers:
  loop:
    type: openai-compatible
    base_url: "{base_url}"
routes:
  r: {{target: {{provider: loop, model: m}}}}
"""


@pytest.mark.parametrize("listen, base_url", [
    ("127.0.0.1", "http://127.0.0.1:8080/v1"),
    ("127.0.0.1", "http://localhost:8080/v1"),
    ("127.0.0.1", "http://[::1]:8080/v1"),
    ("0.0.0.0", "http://127.0.0.1:8080/v1"),
    ("0.0.0.0", "http://0.0.0.0:8080"),
    ("10.1.2.3", "http://10.1.2.3:8080/v1"),
])
def test_a_provider_whose_base_url_is_the_gateway_is_a_compile_error(tmp_path, capsys, listen,
                                                                     base_url):
    """`gateway validate` refuses it, at the base_url's line and column."""
    from gateway.cli import main

    path = tmp_path / "gateway.yaml"
    path.write_text(SELF_CONFIG.format(listen=listen, base_url=base_url))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr()
    assert f"{path}:9:15: $.providers.loop.base_url: " in err.out + err.err
    assert "is this gateway itself" in err.out + err.err


@pytest.mark.parametrize("listen, base_url", [
    ("127.0.0.1", "http://127.0.0.1:8081/v1"),
    ("127.0.0.1", "http://10.1.2.3:8080/v1"),
    ("10.1.2.3", "http://10.1.2.4:8080/v1"),
])
def test_another_port_or_host_is_not_the_gateway(tmp_path, capsys, listen, base_url):
    from gateway.cli import main

    path = tmp_path / "gateway.yaml"
    path.write_text(SELF_CONFIG.format(listen=listen, base_url=base_url))
    assert main(["validate", str(path)]) == 0


def test_serve_refuses_a_provider_that_is_the_port_given_on_the_command_line(tmp_path):
    """With --port the listen address is known only when serving: checked there."""
    port = free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(SELF_CONFIG.format(listen="127.0.0.1", base_url=f"http://localhost:{port}/v1"))
    done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(path),
                           "--port", str(port)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "$.providers.loop.base_url" in done.stderr and "is this gateway itself" in done.stderr


async def test_every_upstream_request_carries_the_hop_count(tmp_path):
    """A client's request goes on with x-gateway-hops: 1; one that came through another
    gateway goes on with its count plus one."""
    with Scripted() as up:
        async with gateway(tmp_path, HTML_CONFIG.format(base_url=up.base_url)) as (client, _):
            await client.post("/v1/chat/completions", json=chat("direct"))
            await client.post("/v1/chat/completions", json=chat("direct", stream=True),
                              headers={"x-gateway-hops": "2"})
    assert [s.headers.get("x-gateway-hops") for s in up.seen] == ["1", "3"]


@pytest.mark.parametrize("hops, status", [("3", 508), ("99", 508), ("x", 400)])
async def test_a_request_that_went_round_too_often_is_refused(tmp_path, hops, status):
    """508 Loop Detected in OpenAI's shape, before any upstream is called."""
    with Scripted() as up:
        async with gateway(tmp_path, HTML_CONFIG.format(base_url=up.base_url)) as (client, _):
            r = await client.post("/v1/chat/completions", json=chat("direct"),
                                  headers={"x-gateway-hops": hops})
    assert r.status_code == status and up.seen == []
    assert set(r.json()["error"]) == {"message", "type", "code", "param"}
    assert "x-gateway-hops" in r.json()["error"]["message"]


def test_two_gateways_pointing_at_each_other_stop(tmp_path):
    """A -> B -> A -> B: the fourth arrival is refused, and each gateway sees the request
    twice at most."""
    from ..gateway_process import GatewayProcess

    loop = """
version: 1
defaults: {{retry: {{attempts: 1}}}}
providers:
  other: {{type: openai-compatible, base_url: "http://localhost:{port}/v1"}}
routes:
  m: {{target: {{provider: other, model: m}}}}   # the model it sends on is a route there
"""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a = GatewayProcess(tmp_path / "a" / "gateway.yaml")
    b = GatewayProcess(tmp_path / "b" / "gateway.yaml")
    a.config_path.write_text(loop.format(port=b.port))
    b.config_path.write_text(loop.format(port=a.port))
    try:
        a.start(), b.start()
        r = loopback.post(a.base_url + "/v1/chat/completions", json=chat("m"), timeout=20)
    finally:
        a.stop(), b.stop()
    assert r.status_code == 508, r.text
    for gw in (a, b):
        assert gw.log().count('"event":"request"') == 2, gw.log()


@pytest.mark.parametrize("quoted, kept", [
    # OpenAI's 401 quotes the key it got, masked but for its prefix and last four characters
    ("Incorrect API key provided: sk-proj-********************************abcd. You can find",
     "Incorrect API key provided: ***. You can find"),
    ("Incorrect API key provided: sk-abc*****wxyz.", "Incorrect API key provided: ***."),
    # Google's keys travel in the URL (?key=): an error that quotes the URL quotes the key
    ("403 for https://generativelanguage.googleapis.com/v1beta/models/x?key="
     "AIzaSyA1234567890abcdefghijklmnopqrstuv",
     "403 for https://generativelanguage.googleapis.com/v1beta/models/x?key=***"),
    ("no key here: sk-short, ask-me, AIza", "no key here: sk-short, ask-me, AIza"),
])
def test_key_shaped_text_is_masked_whatever_the_config(quoted, kept):
    """Upstream errors can quote a credential the gateway does not know as such (partly
    masked by the provider, or another tenant's): anything shaped like a key goes."""
    from gateway.providers.scrub import NO_SECRETS

    assert NO_SECRETS.text(quoted) == kept
