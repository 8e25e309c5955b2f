"""Key changes reach every process on its next request through the key generation (SQLite's
data_version of keys.db), with no file stat per request; the usage writer, busy every
second, writes another file and never bumps the generation."""

from __future__ import annotations

import os

from gateway.keys.store import KeyStore, keystore_path
from gateway.middleware.usage import usage_db, write_usage

from ..server.inprocess import app_client
from .configs import MOCK

CONFIG = MOCK


def test_a_revocation_in_one_store_is_seen_by_the_other_on_its_next_lookup(tmp_path):
    """Two stores on one file stand for two workers (or the CLI and a worker)."""
    path = keystore_path(str(tmp_path))
    admin, worker = KeyStore(path), KeyStore(path)
    try:
        raw, key = admin.create("team")
        assert worker.lookup(key.sha256).name == "team"
        admin.revoke("team")
        assert worker.lookup(key.sha256) is None
        assert worker.ever_issued()
    finally:
        admin.close(), worker.close()


def test_lookups_do_not_stat_the_database(tmp_path, monkeypatch):
    path = keystore_path(str(tmp_path))
    store = KeyStore(path)
    try:
        _, key = store.create("team")
        assert store.lookup(key.sha256) is not None
        stats = []
        real_stat = os.stat
        monkeypatch.setattr(os, "stat", lambda *a, **k: stats.append(a) or real_stat(*a, **k))
        for _ in range(100):
            assert store.lookup(key.sha256) is not None
        monkeypatch.undo()
        assert stats == []
    finally:
        store.close()


def test_usage_writes_leave_the_key_generation_alone(tmp_path):
    store = KeyStore(keystore_path(str(tmp_path)))
    try:
        store.create("team")
        store.lookup("x")
        generation = store._connect().execute("PRAGMA data_version").fetchone()[0]
        write_usage(usage_db(str(tmp_path)),
                    {("2026-01-01", "team", "chat", "demo/m"): [1, 2, 3, 0.1]})
        assert store._connect().execute("PRAGMA data_version").fetchone()[0] == generation
    finally:
        store.close()


async def test_a_key_revoked_elsewhere_is_refused_on_the_next_request(tmp_path):
    """The CLI (its own store, its own connection) revokes a key the running app accepted:
    the very next request gets 401."""
    cli = KeyStore(keystore_path(str(tmp_path / ".gateway")))
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    try:
        async with app_client(CONFIG, tmp_path) as client:
            raw, _ = cli.create("team")
            auth = {"Authorization": f"Bearer {raw}"}
            assert (await client.post("/v1/chat/completions", json=body,
                                      headers=auth)).status_code == 200
            cli.revoke("team")
            assert (await client.post("/v1/chat/completions", json=body,
                                      headers=auth)).status_code == 401
    finally:
        cli.close()
