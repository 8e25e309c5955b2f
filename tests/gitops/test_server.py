"""The server: versions recorded as configs are applied, rollback while serving, the admin
version endpoints, includes watched, --env, and no secret in any answer. In process, but for
the commands that talk to a running server by URL (`history --url`, `diff --url`)."""

from __future__ import annotations

import threading
import time

import httpx

from gateway.config.loader import load_bytes
from gateway.config.versions import VersionStore

from ..gateway_process import write_atomically
from ..inprocess_gateway import poll
from .conftest import LITERAL_SECRET, SECRETS, assert_no_secret

TOKEN = SECRETS["GATEWAY_ADMIN_TOKEN"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def config(model: str) -> str:
    return f"""\
version: 1
server: {{admin_token: "${{GATEWAY_ADMIN_TOKEN}}"}}
providers:
  demo: {{type: mock}}
  openai:
    type: openai
    api_key: "${{OPENAI_API_KEY}}"
    headers: {{X-Org-Token: {LITERAL_SECRET}}}
routes:
  live: {{target: {{provider: demo, model: {model}}}}}
"""


def admin(gw, path: str, method: str = "GET", **kwargs) -> httpx.Response:
    response = gw.request(method, path, headers=AUTH, **kwargs)
    assert_no_secret(response.text)
    return response


def wait_for_version(gw, version: int, timeout: float = 5.0) -> dict:
    return poll(lambda: admin(gw, "/admin/config").json(),
                lambda info: info["version"] >= version, timeout, f"version {version} not applied")


def ask(gw, model: str = "live") -> httpx.Response:
    return gw.post("/v1/chat/completions",
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_rollback_while_serving(gateway_app, cli):
    """`gateway rollback` under a running server: it reloads, no request fails, history shows it."""
    gw = gateway_app(config("m1"), env=SECRETS)
    url = gw.listen()
    write_atomically(gw.config_path, config("m2"))
    wait_for_version(gw, 2)
    answers: list[tuple[int, str, str]] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                r = client.post("/v1/chat/completions",
                                json={"model": "live", "messages": [{"role": "user", "content": "x"}]})
                answers.append((r.status_code, r.headers.get("x-gateway-config-version", ""),
                                r.json().get("model", "") if r.status_code == 200 else r.text))

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        time.sleep(0.2)
        result = cli("rollback", "1", "--config", gw.config_path)
        assert result.code == 0, result.text
        assert f"{gw.config_path}: restored version 1" in result.out
        assert "as version 3;" in result.out
        wait_for_version(gw, 3)
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join(10)
    assert answers and all(status == 200 for status, _, _ in answers), answers[-3:]
    assert {(v, m) for _, v, m in answers} <= {("2", "m2"), ("3", "m1")}
    assert answers[-1][1:] == ("3", "m1")
    assert ask(gw).json()["model"] == "m1"
    assert gw.config_path.read_text() == config("m1")
    history = cli("history", "--config", gw.config_path, "--url", url)
    assert history.code == 0
    lines = history.out.splitlines()
    assert f"(running: version 3 at {url})" in lines[0]
    marker, number, _applied, source = lines[2].split()[:4]
    assert (marker, number, source) == ("*", "3", "rollback")
    assert lines[2].rstrip().endswith("restored from 1")
    listing = admin(gw, "/admin/config/versions").json()
    assert listing["running"] == 3
    assert [(v["number"], v["source"], v["restored_from"], v["running"])
            for v in listing["versions"]] == [
        (3, "rollback", 1, True), (2, "file", None, False), (1, "startup", None, False)]
    time.sleep(0.2)
    assert_no_secret(gw.log())


def test_version_endpoint_shows_references_not_secrets(gateway_app):
    """GET /admin/config/versions/{n}: the text keeps ${VAR}, literal secrets are masked."""
    gw = gateway_app(config("m1"), env=SECRETS)
    shown = admin(gw, "/admin/config/versions/1").json()
    assert shown["number"] == 1 and shown["running"] is True and shown["source"] == "startup"
    assert shown["text"] == config("m1").replace(LITERAL_SECRET, '"***"')
    assert '"${OPENAI_API_KEY}"' in shown["text"]
    missing = admin(gw, "/admin/config/versions/7")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "version_not_found"
    assert gw.get("/admin/config/versions").status_code == 401


def test_admin_rollback(gateway_app, tmp_path):
    """POST /admin/rollback restores, refuses invalid versions with positions, checks input."""
    gw = gateway_app(config("m1"), env=SECRETS)
    write_atomically(gw.config_path, config("m2"))
    wait_for_version(gw, 2)
    done = admin(gw, "/admin/rollback", "POST", json={"steps": 1})
    assert done.status_code == 200, done.text
    assert done.json() == {"result": "applied", "version": 3, "restored_from": 1, "changed": True,
                           "errors": []}
    assert ask(gw).json()["model"] == "m1"
    assert admin(gw, "/admin/rollback", "POST", json={"version": 99}).status_code == 404
    bad_json = gw.post("/admin/rollback", content=b"{nope",
                       headers={**AUTH, "Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert admin(gw, "/admin/rollback", "POST", json={"version": 1, "steps": 1}).status_code == 400
    assert gw.post("/admin/rollback").status_code == 401
    broken = config("m9").replace("provider: demo", "provider: gone")
    store = VersionStore(str(tmp_path / ".gateway"))
    number, _ = store.record(load_bytes(broken.encode(), str(gw.config_path), SECRETS), "file",
                             git=(None, None))
    refused = admin(gw, "/admin/rollback", "POST", json={"version": number})
    assert refused.status_code == 422
    body = refused.json()
    assert body["result"] == "refused" and body["version"] == 3
    assert f"{gw.config_path}:10:29: $.routes.live.target.provider: unknown provider 'gone'" in \
        body["errors"][0]
    assert gw.config_path.read_text() == config("m1")
    assert ask(gw).json()["model"] == "m1"


def test_versions_survive_a_restart(gateway_app):
    """Numbers come from the store: a restart on the same file keeps the number; edits go on."""
    first = gateway_app(config("m1"), env=SECRETS)
    write_atomically(first.config_path, config("m2"))
    wait_for_version(first, 2)
    first.stop()
    second = gateway_app(config("m2"), env=SECRETS)
    assert wait_for_version(second, 2)["version"] == 2
    assert ask(second).headers["x-gateway-config-version"] == "2"
    assert admin(second, "/admin/reload", "POST").json()["result"] == "unchanged"
    write_atomically(second.config_path, config("m3"))
    wait_for_version(second, 3)
    listing = admin(second, "/admin/config/versions").json()["versions"]
    assert [(v["number"], v["source"]) for v in listing] == [(3, "file"), (2, "file"), (1, "startup")]


def test_included_file_is_watched(gateway_app, tmp_path, cli):
    """Editing a file the config includes reloads it and records a new version."""
    (tmp_path / "routes.yaml").write_text("routes:\n  live: {target: {provider: demo, model: r1}}\n")
    gw = gateway_app("version: 1\ninclude: routes.yaml\nproviders: {demo: {type: mock}}\n")
    assert ask(gw).json()["model"] == "r1"
    write_atomically(tmp_path / "routes.yaml",
                     "routes:\n  live: {target: {provider: demo, model: r2}}\n")
    gw.wait_for_version(2)
    assert ask(gw).json()["model"] == "r2"
    shown = gw.get("/admin/config/versions/2").json()
    assert shown["includes"] == ["routes.yaml"]
    assert "model: r2" in shown["files"]["routes.yaml"]
    history = cli("history", "--config", gw.config_path, "--offline")
    assert "+1 included" in history.out.splitlines()[2]


def test_newly_included_file_in_another_folder_is_watched(gateway_app, tmp_path):
    """After a reload adds an include in another folder, edits to that file reload too."""
    (tmp_path / "more").mkdir()
    (tmp_path / "more/extra.yaml").write_text("routes:\n  extra: {target: {provider: demo, model: e1}}\n")
    gw = gateway_app("version: 1\nproviders: {demo: {type: mock}}\n"
                         "routes:\n  live: {target: {provider: demo, model: m}}\n")
    write_atomically(gw.config_path, "version: 1\ninclude: more/extra.yaml\n"
                                     "providers: {demo: {type: mock}}\n"
                                     "routes:\n  live: {target: {provider: demo, model: m}}\n")
    gw.wait_for_version(2)
    assert ask(gw, "extra").json()["model"] == "e1"
    time.sleep(0.3)  # the watcher re-arms on the new set of files
    write_atomically(tmp_path / "more/extra.yaml",
                     "routes:\n  extra: {target: {provider: demo, model: e2}}\n")
    gw.wait_for_version(3)
    assert ask(gw, "extra").json()["model"] == "e2"


def test_serve_with_environment(gateway_factory, cli):
    """`gateway serve --env prod` merges the prod overlay and records the environment."""
    text = ("version: 1\nproviders: {demo: {type: mock}}\nroutes:\n"
            "  live: {target: {provider: demo, model: base}}\n"
            "environments:\n  prod:\n    routes:\n      live: {target: {model: prod-model}}\n")
    gw = gateway_factory(text, args=("--env", "prod"))
    assert ask(gw).json()["model"] == "prod-model"
    listing = gw.get("/admin/config/versions").json()
    assert listing["environment"] == "prod"
    assert listing["versions"][0]["environment"] == "prod"
    diff = cli("diff", "--config", gw.config_path, "--url", gw.base_url)
    assert diff.code == 0 and diff.out.splitlines()[-1] == "no changes", diff.text


def test_diff_against_running(gateway_app, cli, monkeypatch):
    """`gateway diff --against running` compares the file with what the server serves."""
    gw = gateway_app(config("m1"), env=SECRETS, watch=False)
    url = gw.listen()
    gw.config_path.write_text(config("m2"))
    result = cli("diff", "--config", gw.config_path, "--against", "running",
                 "--url", url, "-f", "json")
    assert result.code == 1, result.text
    (change,) = result.json["changes"]
    assert (change["path"], change["old"], change["new"]) == ("target.model", "m1", "m2")
    assert result.json["old"] == f"running (version 1 at {url})"
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "wrong")
    unauthorised = cli("diff", "--config", gw.config_path, "--against", "running",
                       "--url", url)
    assert unauthorised.code == 2 and "401" in unauthorised.err
