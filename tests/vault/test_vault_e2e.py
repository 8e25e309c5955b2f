"""The server (in process): secret:NAME reaches the upstream as the vault's value and
nowhere else."""

from __future__ import annotations

from pathlib import Path

import httpx

from ..cli_runner import run_cli
from ..gateway_process import write_atomically
from ..inprocess_gateway import poll
from .helpers import MASTER_VARS, new_key

FIRST = "sk-vault-first-5b9d2e7c41aa"
SECOND = "sk-vault-second-0c8e3f6a92bb"

CONFIG = """\
version: 1
providers:
  up:
    type: openai-compatible
    base_url: {base_url}
    api_key: secret:upstream
    headers: {{x-extra: secret:extra}}
routes:
  chat: {{target: {{provider: up, model: fake-model, retry: {{attempts: 1}}}}}}
"""

ADMIN_PATHS = ("/admin/config", "/admin/config/versions", "/admin/config/versions/1",
               "/admin/health", "/admin/keys", "/metrics", "/readyz", "/v1/models")


def chat(gw) -> httpx.Response:
    return gw.post("/v1/chat/completions",
                   json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})


def wait_for_rejection(gw, timeout: float = 10.0) -> dict:
    return poll(lambda: gw.get("/admin/config").json(), lambda info: info.get("last_rejection"),
                timeout, "the broken config was not rejected", every=0.05)


def test_upstream_gets_the_vault_value_and_nothing_leaks(tmp_path: Path, upstream, gateway_app,
                                                          monkeypatch):
    """Bearer <vault value> upstream; reloads pick up new values; no log line or admin
    answer holds a value; an unknown name is rejected at its line:col."""
    key = new_key()
    for name in MASTER_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEWAY_MASTER_KEY", key)
    data_dir = str(tmp_path / ".gateway")
    for name, value in (("upstream", FIRST), ("extra", "hdr-" + FIRST)):
        stored = run_cli("secrets", "set", name, "--data-dir", data_dir, stdin=value)
        assert stored.code == 0, stored.err
    config = CONFIG.format(base_url=upstream.base_url)
    assert FIRST not in config
    gw = gateway_app(config)

    response = chat(gw)
    assert response.status_code == 200, response.text
    headers = upstream.requests[-1].headers
    assert headers["Authorization"] == f"Bearer {FIRST}"
    assert headers["x-extra"] == "hdr-" + FIRST

    # a new value is used from the next reload on
    updated = run_cli("secrets", "set", "upstream", "--data-dir", data_dir, stdin=SECOND)
    assert updated.code == 0, updated.err
    reload = gw.post("/admin/reload?force=1")
    assert reload.status_code == 200, reload.text
    assert chat(gw).status_code == 200
    assert upstream.requests[-1].headers["Authorization"] == f"Bearer {SECOND}"

    # an unknown name rejects the new file; the running config keeps serving
    write_atomically(gw.config_path, config.replace("secret:upstream", "secret:upstrem"))
    info = wait_for_rejection(gw)
    (error,) = info["last_rejection"]["errors"]
    assert (error["line"], error["column"]) == (6, 14)
    assert "unknown secret 'upstrem'" in error["message"]
    assert error["hint"] == "did you mean 'upstream'?"
    assert chat(gw).status_code == 200
    assert upstream.requests[-1].headers["Authorization"] == f"Bearer {SECOND}"

    answers = [gw.get(p).text for p in ADMIN_PATHS]
    assert "secret:upstream" in answers[2]  # the stored version keeps the reference
    gw.stop()
    log = gw.log()
    assert "config_error" in log or "rejected" in log  # the log did record the rejection
    for value in (FIRST, SECOND, "hdr-" + FIRST, key):
        assert value not in log, f"{value} in the gateway log"
        for path, text in zip(ADMIN_PATHS, answers):
            assert value not in text, f"{value} in {path}"
