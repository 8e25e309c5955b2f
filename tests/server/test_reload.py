"""Hot reload: edits apply within a second, broken files are rejected while the last good
config keeps serving, and no request fails while the file changes under load. In process, but
for the real server's file watch and SIGHUP."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from ..gateway_process import write_atomically
from ..inprocess_gateway import poll, while_sending


def config(model: str, extra_route: str = "") -> str:
    return f"""
version: 1
providers:
  demo: {{type: mock}}
routes:
  live: {{target: {{provider: demo, model: {model}}}}}
{extra_route}
"""


BROKEN = """
version: 1
providers:
  demo: {type: mock}
routes:
  live:
    target: {provider: demo, model: x}
    fallbak: {targets: []}
"""


def ask(gw, model: str = "live") -> httpx.Response:
    return gw.post("/v1/chat/completions",
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_edit_applies_within_a_second(gateway_factory):
    """Saving a new config changes routing for the next requests within one second."""
    gw = gateway_factory(config("v1"))
    assert ask(gw).json()["model"] == "v1"
    written = time.monotonic()
    write_atomically(gw.config_path, config("v2"))
    gw.wait_for_version(2, timeout=5)
    assert time.monotonic() - written < 1.0
    reply = ask(gw)
    assert reply.json()["model"] == "v2"
    assert reply.headers["x-gateway-config-version"] == "2"


def test_in_place_write_applies(gateway_app):
    """A plain in-place write (no rename) is picked up as well."""
    gw = gateway_app(config("v1"))
    gw.config_path.write_text(config("v2"))
    gw.wait_for_version(2)
    assert ask(gw).json()["model"] == "v2"


def test_broken_file_is_rejected_and_old_graph_serves(gateway_app):
    """A broken save is logged as FILE:LINE:COL, shown at /admin/config, and changes nothing."""
    gw = gateway_app(config("v1"))
    write_atomically(gw.config_path, BROKEN)
    info = poll(lambda: gw.get("/admin/config").json(), lambda info: info["last_rejection"])
    rejection = info["last_rejection"]
    assert rejection is not None, info
    assert info["version"] == 1
    texts = [e["text"] for e in rejection["errors"]]
    assert f"{gw.config_path}:8:5: $.routes.live.fallbak: unknown key 'fallbak' (did you mean 'fallback'?)" in texts
    assert rejection["errors"][0]["line"] == 8
    assert ask(gw).json()["model"] == "v1"
    assert f"{gw.config_path}:8:5: $.routes.live.fallbak: unknown key" in gw.log()


def test_sighup_and_admin_reload(gateway_factory):
    """SIGHUP and POST /admin/reload reload the file too (with the watcher off)."""
    gw = gateway_factory(config("v1"), args=("--no-watch",))
    gw.config_path.write_text(config("v2"))
    time.sleep(0.3)
    assert ask(gw).json()["model"] == "v1"  # nothing watches the file
    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_for_version(2)
    assert ask(gw).json()["model"] == "v2"
    gw.config_path.write_text(config("v3"))
    r = gw.post("/admin/reload")
    assert r.status_code == 200 and r.json() == {"result": "applied", "version": 3, "errors": []}
    assert gw.post("/admin/reload").json()["result"] == "unchanged"
    gw.config_path.write_text(BROKEN)
    r = gw.post("/admin/reload")
    assert r.status_code == 422 and r.json()["result"] == "rejected"
    assert any("fallbak" in e for e in r.json()["errors"])


def test_admin_token_protects_admin_endpoints(gateway_app):
    """With server.admin_token set, /admin/* needs the bearer token."""
    text = config("v1").replace("version: 1\n", "version: 1\nserver: {admin_token: s3cret}\n", 1)
    gw = gateway_app(text)
    assert gw.get("/admin/config").status_code == 401
    ok = gw.get("/admin/config", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["version"] == 1
    assert "s3cret" not in ok.text


def test_reload_under_load_loses_no_request(gateway_app, quick_settle):
    """20 rewrites (some invalid) under concurrent traffic: zero failures, and every answer
    followed the config version it reports."""
    gw = gateway_app(config("m1"))
    expected = {1: "m1"}  # config version -> model it routes to
    results: list[tuple[int, str, str]] = []
    failures: list[str] = []

    def client_loop() -> None:
        r = ask(gw)
        if r.status_code != 200:
            failures.append(f"{r.status_code} {r.text}")
            return
        results.append((int(r.headers["x-gateway-config-version"]), r.json()["model"],
                        r.headers["x-gateway-target"]))

    def admin_config() -> dict:
        return gw.get("/admin/config").json()

    def rewrite() -> None:
        poll(lambda: len(results), lambda n: n >= 5)  # some traffic on version 1 first
        version = 1
        for i in range(2, 22):
            if i % 4 == 0:
                before = admin_config()["reloads"]["rejected"]
                write_atomically(gw.config_path, BROKEN.replace("model: x", f"model: bad{i}"))
                poll(admin_config, lambda info: info["reloads"]["rejected"] > before)
            else:
                version += 1
                expected[version] = f"m{i}"
                write_atomically(gw.config_path, config(f"m{i}"))
                poll(admin_config, lambda info: info["version"] == version)
            time.sleep(0.05)

    while_sending(client_loop, 16, rewrite)
    assert failures == []
    assert len(results) >= 200
    assert {v for v, _, _ in results} >= {1, max(expected)}
    for version, model, target in results:
        assert model == expected[version], (version, model)
        assert target == f"demo/{expected[version]}"


def test_running_request_finishes_on_its_graph(gateway_app):
    """A request that started before a swap finishes with the routing it started with."""
    slow = """
version: 1
providers:
  demo: {{type: mock, latency: {latency}}}
routes:
  live: {{target: {{provider: demo, model: {model}}}}}
"""
    gw = gateway_app(slow.format(latency="1s", model="old"))
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(ask, gw)
        time.sleep(0.2)
        write_atomically(gw.config_path, slow.format(latency="1ms", model="new"))
        gw.wait_for_version(2)
        new = ask(gw)
        old = running.result()
    assert (old.status_code, old.json()["model"], old.headers["x-gateway-config-version"]) == (200, "old", "1")
    assert (new.status_code, new.json()["model"], new.headers["x-gateway-config-version"]) == (200, "new", "2")
