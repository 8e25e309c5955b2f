"""The audit trail end to end: admin API actions (keys, reloads) and CLI actions (keys,
rollback) are recorded with who did them, config changes with a diff summary, and
`gateway audit verify` finds an edited row."""

from __future__ import annotations

import getpass
import hashlib
import json
import sqlite3

from gateway.store.audit_db import AuditTrail

from ..cli_runner import run_cli
from ..inprocess_gateway import poll

TOKEN = "adm-token-0123456789abcdef"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
ACTOR = "admin:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:12]

CONFIG = f"""
version: 1
server: {{admin_token: "{TOKEN}"}}
providers:
  demo: {{type: mock}}
routes:
  chat: {{target: {{provider: demo, model: m}}}}
"""


def actions(trail: AuditTrail, count: int) -> list[dict]:
    return poll(trail.rows, lambda rows: len(rows) >= count, 10, f"{count} audit rows")


def test_admin_and_cli_actions_are_recorded_and_verify(gateway_app, tmp_path):
    gw = gateway_app(CONFIG, watch=False)
    config = tmp_path / "gateway.yaml"
    trail = AuditTrail(str(tmp_path / ".gateway"))

    assert gw.post("/admin/keys", json={"name": "alice", "routes": ["chat"]}, headers=ADMIN).status_code == 201
    assert gw.delete("/admin/keys/alice", headers=ADMIN).status_code == 200
    config.write_text(CONFIG + "  extra: {target: {provider: demo, model: x}}\n")
    assert gw.post("/admin/reload", headers=ADMIN).json()["result"] == "applied"
    config.write_text(CONFIG + "  broken: {target: {provider: nope, model: x}}\n")
    assert gw.post("/admin/reload", headers=ADMIN).status_code == 422
    assert run_cli("keys", "create", "bob", "--config", config).code == 0

    rows = actions(trail, 5)
    assert [(r["actor"], r["action"], r["subject"]) for r in rows] == [
        (ACTOR, "key.create", "alice"),
        (ACTOR, "key.revoke", "alice"),
        (ACTOR, "config.applied", str(config)),
        (ACTOR, "config.rejected", str(config)),
        (f"cli:{getpass.getuser()}", "key.create", "bob"),
    ]
    applied = json.loads(rows[2]["details"])
    assert (applied["source"], applied["previous_version"], applied["version"]) == ("admin", 1, 2)
    assert applied["diff"]["routes"] == {"added": ["extra"], "removed": [], "changed": []}
    rejected = json.loads(rows[3]["details"])
    assert "unknown provider 'nope'" in rejected["errors"][0]
    assert rejected["still_serving_version"] == 2
    everything = json.dumps(rows)
    assert TOKEN not in everything and "key_sha256" not in everything

    verified = run_cli("audit", "verify", "--config", config)
    assert (verified.code, "intact, 5 rows" in verified.out) == (0, True), verified.text
    listed = run_cli("audit", "list", "--since", "1h", "--config", config, "--format", "json")
    assert [r["action"] for r in listed.json] == [r["action"] for r in rows]

    conn = sqlite3.connect(trail.path)
    conn.execute("drop trigger audit_no_update")
    conn.execute("update audit set subject = 'mallory' where id = 2")
    conn.commit()
    conn.close()
    broken = run_cli("audit", "verify", "--config", config)
    assert broken.code == 1 and "broken at row 2: edited" in broken.out, broken.text


def test_file_edits_are_recorded_as_the_watcher_and_rollback_as_the_cli_user(gateway_app, tmp_path):
    """A change seen by the file watcher has actor `watcher`; `gateway rollback` records who
    ran it and which version it restored."""
    text = CONFIG.replace(f'server: {{admin_token: "{TOKEN}"}}', "")
    gw = gateway_app(text)
    config = tmp_path / "gateway.yaml"
    trail = AuditTrail(str(tmp_path / ".gateway"))
    config.write_text(text.replace("model: m", "model: m2"))
    gw.wait_for_version(2, timeout=10)
    [applied] = actions(trail, 1)
    assert (applied["actor"], applied["action"]) == ("watcher", "config.applied")
    assert json.loads(applied["details"])["diff"]["routes"]["changed"] == ["chat"]
    result = run_cli("rollback", "1", "--config", config)
    assert result.code == 0, result.text
    rows = actions(trail, 2)
    assert (rows[1]["actor"], rows[1]["action"]) == (f"cli:{getpass.getuser()}", "config.rollback")
    assert json.loads(rows[1]["details"])["restored_from"] == 1
