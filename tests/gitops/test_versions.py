"""The version store (SQLite, WAL), git details, redaction of texts, and rollback of files."""

from __future__ import annotations

import sqlite3
import stat
import pytest

from gateway.config.loader import load_bytes, load_file
from gateway.config.redact import mask_value, redact_text
from gateway.config.rollback import (
    RollbackRefused,
    VersionNotFound,
    pick_version,
    rollback,
    write_atomically,
)
from gateway.config.versions import VersionStore, data_dir_for, git_info

from .conftest import GitRepo

CONFIG = """\
version: 1
providers:
  demo: {type: mock}
  openai: {type: openai, api_key: "${OPENAI_API_KEY}"}
routes:
  chat: {target: {provider: demo, model: MODEL}}
"""


def loaded(model: str, path: str = "gateway.yaml", environment: str | None = None):
    return load_bytes(CONFIG.replace("MODEL", model).encode(), path, {"OPENAI_API_KEY": "x"})


def test_record_numbers_versions_and_keeps_the_text(tmp_path):
    """Each new config gets the next number; the stored text keeps ${VAR} references."""
    store = VersionStore(str(tmp_path / "data"))
    assert store.record(loaded("a"), "startup", git=(None, None)) == (1, True)
    assert store.record(loaded("b"), "file", git=(None, None)) == (2, True)
    version = store.get(2)
    assert version.text == CONFIG.replace("MODEL", "b")
    assert '"${OPENAI_API_KEY}"' in version.text
    assert [v.number for v in store.list()] == [2, 1]
    assert [v.source for v in store.list()] == ["file", "startup"]
    assert store.latest().number == 2


def test_identical_config_is_not_a_new_version(tmp_path):
    """Recording the config identical to the latest returns the latest number."""
    store = VersionStore(str(tmp_path))
    store.record(loaded("a"), "startup", git=(None, None))
    assert store.next_number(loaded("a")) == 1
    assert store.record(loaded("a"), "file", git=(None, None)) == (1, False)
    assert store.next_number(loaded("b")) == 2
    assert len(store.list()) == 1


def test_same_text_again_after_a_change_is_a_new_version(tmp_path):
    """Going back to an older text is a new version (like a revert commit)."""
    store = VersionStore(str(tmp_path))
    for model in ("a", "b", "a"):
        store.record(loaded(model), "file", git=(None, None))
    assert [v.number for v in store.list()] == [3, 2, 1]
    assert store.get(3).sha256 == store.get(1).sha256


def test_store_uses_wal_and_survives_reopening(tmp_path):
    """The database is in WAL mode and numbers continue after a new VersionStore (restart)."""
    VersionStore(str(tmp_path)).record(loaded("a"), "startup", git=(None, None))
    assert VersionStore(str(tmp_path)).record(loaded("b"), "startup", git=(None, None)) == (2, True)
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        assert db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_unknown_source_is_stored_as_file(tmp_path):
    """SIGHUP ("signal") re-reads the file: stored as source file."""
    store = VersionStore(str(tmp_path))
    store.record(loaded("a"), "signal", git=(None, None))
    assert store.get(1).source == "file"


def test_reading_a_missing_store_creates_nothing(tmp_path):
    """history on a gateway that never ran lists nothing and leaves no file behind."""
    store = VersionStore(str(tmp_path / "none"))
    assert store.list() == [] and store.latest() is None and store.get(1) is None
    assert not (tmp_path / "none").exists()


def test_data_dir_follows_the_config(tmp_path):
    """server.data_dir is relative to the config file, default .gateway."""
    path = str(tmp_path / "gateway.yaml")
    assert data_dir_for(path, {}) == str(tmp_path / ".gateway")
    assert data_dir_for(path, {"server": {"data_dir": "state"}}) == str(tmp_path / "state")


def test_git_info_commit_and_dirty(repo: GitRepo):
    """Inside a work tree: HEAD and whether the file differs from it; outside: nothing."""
    path = repo.path / "gateway.yaml"
    head = repo.commit({"gateway.yaml": CONFIG}, "one")
    assert git_info([str(path)]) == (head, False)
    path.write_text(CONFIG + "# edited\n")
    assert git_info([str(path)]) == (head, True)


def test_git_info_outside_git(tmp_path, monkeypatch):
    """A config outside any git work tree has no git details."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # do not look above tmp_path
    folder = tmp_path / "plain"
    folder.mkdir()
    path = folder / "g.yaml"
    path.write_text("version: 1\n")
    assert git_info([str(path)]) == (None, None)


def test_redact_text_masks_literal_secrets_only():
    """Literal secrets become ***; references, defaults' names and everything else stay."""
    text = (
        "version: 1\n"
        "server: {admin_token: plain-token-1}\n"
        "providers:\n"
        "  a: {type: openai, api_key: sk-literal-123}\n"
        "  b: {type: openai, api_key: \"${OPENAI_API_KEY}\"}\n"
        "  c: {type: openai, api_key: \"${KEY:-sk-default-9}\", headers: {X-Org: org-777}}\n"
        "  d:\n"
        "    type: anthropic\n"
        "    api_key: secret:anthropic-prod\n"
        "    headers:\n"
        "      Authorization: Bearer ${TOKEN}\n"
        "observability:\n"
        "  alerts: [{on: [circuit_open], webhook: 'https://hooks.example/T0/B0/xyz'}]\n"
    )
    out = redact_text(text)
    for secret in ("plain-token-1", "sk-literal-123", "sk-default-9", "org-777", "T0/B0/xyz"):
        assert secret not in out
    for kept in ('"${OPENAI_API_KEY}"', "${KEY:-***}", "secret:anthropic-prod",
                 "Bearer ${TOKEN}", "type: anthropic"):
        assert kept in out
    assert out.count("\n") == text.count("\n")


def test_mask_value():
    """References pass, literals and defaults are masked."""
    assert mask_value("${A}") == "${A}"
    assert mask_value("secret:name") == "secret:name"
    assert mask_value("${A:-x}") == "${A:-***}"
    assert mask_value("sk-123") == "***"
    assert mask_value("") == ""


def test_write_atomically_keeps_mode_and_leaves_no_temp(tmp_path):
    """The file is replaced whole, keeps its permissions, and no temporary file remains."""
    path = tmp_path / "gateway.yaml"
    path.write_text("old\n")
    path.chmod(0o640)
    write_atomically(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["gateway.yaml"]


def test_rollback_writes_records_and_refuses_invalid(tmp_path, monkeypatch):
    """rollback restores the text as a new version; an invalid version is refused, file untouched."""
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    path = tmp_path / "gateway.yaml"
    store = VersionStore(str(tmp_path / ".gateway"))
    path.write_text(CONFIG.replace("MODEL", "a"))
    store.record(load_file(str(path)), "startup")
    path.write_text(CONFIG.replace("MODEL", "b"))
    store.record(load_file(str(path)), "file")
    result = rollback(store, str(path), pick_version(store, steps=1))
    assert (result.number, result.restored_from, result.changed) == (3, 1, True)
    assert path.read_text() == CONFIG.replace("MODEL", "a")
    assert store.get(3).source == "rollback" and store.get(3).restored_from == 1
    again = rollback(store, str(path), store.get(1))
    assert again.changed is False and len(store.list()) == 3
    broken = CONFIG.replace("MODEL", "x").replace("provider: demo", "provider: gone")
    store.record(load_bytes(broken.encode(), str(path), {"OPENAI_API_KEY": "x"}), "file",
                 git=(None, None))
    with pytest.raises(RollbackRefused) as info:
        rollback(store, str(path), store.get(4))
    assert "version 4 no longer validates" in str(info.value)
    assert f"{path}:6:29: $.routes.chat.target.provider: unknown provider 'gone'" in str(info.value)
    assert path.read_text() == CONFIG.replace("MODEL", "a")
    with pytest.raises(VersionNotFound):
        pick_version(store, 99)
    with pytest.raises(VersionNotFound):
        pick_version(store, steps=10)


def test_rollback_restores_included_files(tmp_path, monkeypatch):
    """A version with includes restores the included files too, from the store."""
    main = tmp_path / "gateway.yaml"
    routes = tmp_path / "routes.yaml"
    main.write_text("version: 1\ninclude: routes.yaml\nproviders: {demo: {type: mock}}\n")
    routes.write_text("routes: {chat: {target: {provider: demo, model: one}}}\n")
    store = VersionStore(str(tmp_path / ".gateway"))
    store.record(load_file(str(main)), "startup")
    assert store.get(1).files == {"routes.yaml": routes.read_text()}
    routes.write_text("routes: {chat: {target: {provider: demo, model: two}}}\n")
    store.record(load_file(str(main)), "file")
    rollback(store, str(main), store.get(1))
    assert "model: one" in routes.read_text()


def test_unusable_store_does_not_stop_the_gateway(tmp_path):
    """With a data_dir that cannot be created, configs still compile and get a number."""
    from gateway.config.compiler import Runtime
    from gateway.server.versioning import startup_graph

    (tmp_path / "blocker").write_text("a file, not a folder\n")
    path = tmp_path / "gateway.yaml"
    path.write_text("version: 1\nserver: {data_dir: blocker/state}\n"
                    "providers: {demo: {type: mock}}\nroutes: {a: {target: {provider: demo, model: m}}}\n")
    graph, loaded = startup_graph(str(path), Runtime())
    assert graph.version == 1 and "a" in graph.routes
    assert loaded.text == path.read_text()


def test_history_command(cli, tmp_path):
    """`gateway history` lists versions newest first, in words and in JSON."""
    path = tmp_path / "gateway.yaml"
    store = VersionStore(str(tmp_path / ".gateway"))
    for model, source in (("a", "startup"), ("b", "file")):
        path.write_text(CONFIG.replace("MODEL", model))
        store.record(load_file(str(path)), source, git=("0123456789abcdef", model == "b"))
    human = cli("history", "--config", path, "--offline")
    assert human.code == 0
    lines = human.out.splitlines()
    assert lines[0] == (f"{path}: 2 version(s) in {tmp_path / '.gateway' / 'gateway.db'} "
                        "(last applied: version 2)")
    assert lines[2].split()[:3] == ["2", store.get(2).applied_at, "file"]
    assert "0123456789 (dirty)" in lines[2] and "(dirty)" not in lines[3]
    data = cli("history", "--config", path, "--offline", "--format", "json").json
    assert [(v["number"], v["source"], v["git_dirty"]) for v in data["versions"]] == [
        (2, "file", True), (1, "startup", False)]
    assert data["running"] is None
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "gateway.yaml").write_text(CONFIG.replace("MODEL", "a"))
    empty = cli("history", "--config", tmp_path / "other" / "gateway.yaml", "--offline")
    assert empty.code == 0 and "no versions recorded yet" in empty.out
