"""Versions belong to one config (its server.name, else its path): several configs sharing a
folder's .gateway/ never see, diff or roll back each other's versions, old stores are migrated,
and a gateway that fails to start records no version."""

from __future__ import annotations

import socket
import sqlite3

import httpx

from gateway.config.compiler import Runtime
from gateway.config.loader import load_file
from gateway.config.versions import VersionStore, migrations
from gateway.server.app import create_app
from gateway.server.reload import GraphHolder, Reloader
from gateway.server.versioning import record_startup, startup_graph

from .conftest import run_gateway


def config(model: str, server: str = "") -> str:
    return f"""\
version: 1
{server}providers:
  demo: {{type: mock}}
routes:
  chat: {{target: {{provider: demo, model: {model}}}}}
"""


def record(path, text: str, source: str = "startup") -> int:
    """Write ``text`` to ``path`` and record it in the folder's store as a gateway would."""
    path.write_text(text)
    loaded = load_file(str(path))
    number, _ = VersionStore(str(path.parent / ".gateway")).record(loaded, source,
                                                                   git=(None, None))
    return number


def test_serving_a_then_b_then_rolling_back_b_never_writes_a(gateway_app, tmp_path, cli):
    """The issue's steps with servers: serve a.yaml, then b.yaml, then `gateway rollback
    -c b.yaml`: refused (b has one version), and rolling back to a's version by number is
    refused naming a.yaml; b.yaml keeps its text."""
    a = gateway_app(config("from-a"), name="a.yaml")
    a.stop()
    b = gateway_app(config("from-b"), name="b.yaml")
    b.stop()
    b_path = tmp_path / "b.yaml"
    steps = cli("rollback", "-c", b_path)
    assert steps.code == 1 and "holds 1 version(s) of this config" in steps.err, steps.text
    by_number = cli("rollback", "1", "-c", b_path)
    assert by_number.code == 1
    assert f"version 1 belongs to another config ({tmp_path / 'a.yaml'})" in by_number.err
    assert b_path.read_text() == config("from-b")
    assert by_number.out == ""  # errors on stderr only


def test_history_and_steps_see_only_this_configs_versions(cli, tmp_path):
    """a and b alternate in one store: each config's history, --steps and dedup are its own;
    numbers stay unique across the store; --all lists every config's."""
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert record(a, config("a1")) == 1
    assert record(b, config("b1")) == 2
    assert record(a, config("a2"), "file") == 3
    assert record(a, config("a2"), "startup") == 3  # a restart of a on the same text: no new one
    assert record(b, config("b1"), "startup") == 2
    history = cli("history", "-c", a, "--offline", "--format", "json").json
    assert [v["number"] for v in history["versions"]] == [3, 1]
    assert history["identity"] == str(a)
    everything = cli("history", "-c", a, "--offline", "--all", "--format", "json").json
    assert [(v["number"], v["config"]) for v in everything["versions"]] == [
        (3, str(a)), (2, str(b)), (1, str(a))]
    listed = cli("history", "-c", a, "--offline", "--all")
    assert f"config {b}" in listed.out
    done = cli("rollback", "-c", a, "--format", "json")  # one step back: a's version 1
    assert done.code == 0, done.text
    assert done.json["restored_from"] == 1 and a.read_text() == config("a1")
    assert b.read_text() == config("b1")


def test_diff_refuses_another_configs_version(cli, tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    record(a, config("a1"))
    record(b, config("b1"))
    refused = cli("diff", "-c", b, "--against", "1")
    assert refused.code == 2 and refused.out == ""
    assert f"version 1 belongs to another config ({a})" in refused.err
    assert f"gateway diff --config {a} --against 1" in refused.err
    assert cli("diff", "-c", b, "--against", "2").code == 0


def test_server_name_is_the_identity(cli, tmp_path):
    """With server.name, the history follows the name: a copy of the file elsewhere (same name)
    sees and restores it; another name does not."""
    named = config("one", "server: {name: billing-gw}\n")
    first = tmp_path / "old" / "gateway.yaml"
    first.parent.mkdir()
    record(first, named)
    record(first, config("two", "server: {name: billing-gw}\n"), "file")
    moved = tmp_path / "old" / "moved.yaml"
    moved.write_text(config("two", "server: {name: billing-gw}\n"))
    history = cli("history", "-c", moved, "--offline", "--format", "json").json
    assert history["identity"] == "billing-gw"
    assert [v["number"] for v in history["versions"]] == [2, 1]
    assert cli("rollback", "-c", moved).code == 0 and moved.read_text() == named
    other = tmp_path / "old" / "other.yaml"
    other.write_text(config("x", "server: {name: search-gw}\n"))
    refused = cli("rollback", "1", "-c", other)
    assert refused.code == 1 and "belongs to another config (billing-gw)" in refused.err


def old_store(folder, rows: list[dict]) -> None:
    """A store as the previous release left it: migration m001 only, no config column."""
    from sqlite_utils import Database

    folder.mkdir(exist_ok=True)
    db = Database(str(folder / "gateway.db"))
    migrations.apply(db, stop_before="m002_config_identity")
    for row in rows:
        db["config_versions"].insert({"sha256": "0" * 64, "applied_at": "2026-01-01T00:00:00Z",
                                      "source": "startup", "files": "{}", **row})
    db.close()


def test_old_stores_are_migrated(cli, tmp_path):
    """Rows from before identities get the path they recorded; a row without one is an unknown
    config's: shown, restored only with --force."""
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(config("a-now"))
    b.write_text(config("b-now"))
    old_store(tmp_path / ".gateway", [
        {"number": 1, "path": str(a), "text": config("a-old")},
        {"number": 2, "path": str(b), "text": config("b-old")},
        {"number": 3, "path": None, "text": config("who-knows")},
    ])
    history = cli("history", "-c", b, "--offline", "--format", "json").json
    assert [(v["number"], v["config"]) for v in history["versions"]] == [(3, None), (2, str(b))]
    human = cli("history", "-c", b, "--offline")
    assert "unknown config (rollback needs --force)" in human.out
    refused = cli("rollback", "3", "-c", b)
    assert refused.code == 1 and "which config it belongs to is unknown" in refused.err
    assert b.read_text() == config("b-now")
    assert cli("rollback", "1", "-c", b).code == 1  # a's
    forced = cli("rollback", "3", "-c", b, "--force", "--format", "json")
    assert forced.code == 0, forced.text
    assert b.read_text() == config("who-knows")
    with sqlite3.connect(tmp_path / ".gateway" / "gateway.db") as db:
        assert db.execute("select config from config_versions where number = 4").fetchone() == (
            str(b),)  # the restored text is now b's version


async def test_admin_api_sees_only_its_configs_versions(tmp_path):
    """GET /admin/config/versions lists this config's; another's is refused by name (404 to
    show, 409 to restore); "force": true restores it."""
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    record(a, config("a1"))
    b.write_text(config("b1"))
    graph, loaded = startup_graph(str(b), Runtime())
    graph = record_startup(graph, loaded)
    assert graph.version == 2
    reloader = Reloader(str(b), Runtime(), GraphHolder(graph))
    app = create_app(reloader, watch_config=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as client:
        listing = (await client.get("/admin/config/versions")).json()
        assert listing["config"] == str(b)
        assert [v["number"] for v in listing["versions"]] == [2]
        shown = await client.get("/admin/config/versions/1")
        assert shown.status_code == 404
        assert shown.json()["error"]["code"] == "version_of_another_config"
        assert f"belongs to another config ({a})" in shown.json()["error"]["message"]
        refused = await client.post("/admin/rollback", json={"version": 1})
        assert refused.status_code == 409 and b.read_text() == config("b1")
        assert '"force": true' in refused.json()["error"]["message"]
        steps = await client.post("/admin/rollback", json={"steps": 1})
        assert steps.status_code == 404
        forced = await client.post("/admin/rollback", json={"version": 1, "force": True})
        assert forced.status_code == 200, forced.text
        assert b.read_text() == config("a1")


def test_a_start_that_cannot_listen_records_no_version(tmp_path):
    """Port in use: exit 1 with one line, and no version in the store."""
    path = tmp_path / "gateway.yaml"
    path.write_text(config("m"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_gateway("serve", "-c", path, "--port", port)
    assert done.code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.err
    assert VersionStore(str(tmp_path / ".gateway")).list() == []


def test_a_refused_bind_records_no_version(tmp_path):
    """A public bind without keys is refused before anything is recorded."""
    path = tmp_path / "gateway.yaml"
    path.write_text(config("m"))
    done = run_gateway("serve", "-c", path, "--host", "0.0.0.0", "--port", "1")
    assert done.code == 1 and "refusing to listen on 0.0.0.0" in done.err
    assert VersionStore(str(tmp_path / ".gateway")).list() == []
