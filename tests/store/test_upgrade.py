"""A data dir written by the version before gateway/store/ (keys and usage in gateway.db,
counters in state.db without a migrations table) opens and migrates in place: versions stay,
keys and usage move to keys.db and usage.db, counters reload, and the gateway serves them."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from sqlite_utils import Database

from gateway.config.versions import VersionStore
from gateway.keys.store import KeyStore, hash_key, keystore_path
from gateway.middleware.usage import UsageRecorder, query_usage, usage_db
from gateway.state.persistent import SqliteCounters
from gateway.store import state_db
from gateway.store.gateway_db import migrations as version_migrations

from ..server.inprocess import app_client
from .configs import MOCK

# The tables exactly as the previous version created them.
OLD_KEYS = """CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, routes TEXT,
    limits TEXT NOT NULL DEFAULT '{}', budget TEXT, metadata TEXT NOT NULL DEFAULT '{}',
    expires_at REAL, created_at REAL NOT NULL, revoked_at REAL)"""
OLD_USAGE = """CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL, key TEXT NOT NULL, route TEXT NOT NULL, target TEXT NOT NULL,
    requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL, estimated_requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key, route, target))"""
OLD_COUNTERS = """CREATE TABLE IF NOT EXISTS worker_counters (worker INTEGER NOT NULL,
    key TEXT NOT NULL, bucket INTEGER NOT NULL, amount REAL NOT NULL,
    updated REAL NOT NULL, PRIMARY KEY (worker, key, bucket))"""

CONFIG = MOCK
LIVE, REVOKED = "gw-live-key", "gw-revoked-key"


def old_data_dir(data: Path, config_path: Path) -> None:
    data.mkdir(mode=0o700)
    db = Database(sqlite3.connect(data / "gateway.db"))
    db.enable_wal()
    version_migrations.apply(db)  # config versions already came through Migrations
    db["config_versions"].insert({
        "number": 1, "sha256": "a" * 64, "applied_at": "2026-01-01T00:00:00Z",
        "source": "startup", "path": str(config_path), "text": CONFIG, "files": "{}",
        "config": str(config_path)})
    with db.conn:
        db.conn.execute(OLD_KEYS)
        db.conn.execute("INSERT INTO keys (name, sha256, routes, created_at) VALUES (?,?,?,?)",
                        ("live", hash_key(LIVE), '["chat"]', 1.0))
        db.conn.execute("INSERT INTO keys (name, sha256, created_at, revoked_at) "
                        "VALUES (?,?,?,?)", ("gone", hash_key(REVOKED), 1.0, 2.0))
        db.conn.execute(OLD_USAGE)
        db.conn.execute("INSERT INTO usage VALUES ('2026-01-01', 'live', 'chat', 'demo/m', "
                        "4, 40, 80, 0.5, 1)")
    db.close()
    counters = sqlite3.connect(data / "state.db")
    with counters:
        counters.execute(OLD_COUNTERS)
        counters.execute("INSERT INTO worker_counters VALUES (0, 'budget:key:live', -1, 2.5, 1)")
    counters.close()


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_every_store_opens_an_old_data_dir_and_moves_keys_and_usage(tmp_path):
    data = tmp_path / ".gateway"
    old_data_dir(data, tmp_path / "gateway.yaml")

    assert [v.number for v in VersionStore(str(data)).list()] == [1]
    keys = KeyStore(keystore_path(str(data)))
    try:
        assert keys.lookup(hash_key(LIVE)).routes == ("chat",)
        assert keys.lookup(hash_key(REVOKED)) is None and keys.ever_issued()
    finally:
        keys.close()
    assert query_usage(usage_db(str(data))) == [{
        "key": "live", "route": "chat", "target": "demo/m", "requests": 4, "prompt_tokens": 40,
        "completion_tokens": 80, "cost_usd": 0.5, "estimated_requests": 1}]
    counters = SqliteCounters(state_db.path(str(data)))
    assert counters.totals == {"budget:key:live": 2.5}

    assert {"keys.db", "usage.db", "gateway.db", "state.db"} <= {p.name for p in data.iterdir()}
    assert "keys" not in tables(data / "gateway.db")
    assert "usage" not in tables(data / "gateway.db")
    assert "config_versions" in tables(data / "gateway.db")
    with sqlite3.connect(data / "state.db") as db:
        assert db.execute("SELECT migration_set, name FROM _sqlite_migrations").fetchall() == [
            ("gateway.counters", "m001_worker_counters")]


def test_opening_twice_moves_nothing_twice(tmp_path):
    """The move is a migration: a second open (or a second worker) adds nothing."""
    data = tmp_path / ".gateway"
    old_data_dir(data, tmp_path / "gateway.yaml")
    for _ in range(2):
        assert query_usage(usage_db(str(data)))[0]["requests"] == 4
        store = KeyStore(keystore_path(str(data)))
        assert [k.name for k in store.list()] == ["live", "gone"]
        store.close()


async def test_the_gateway_serves_an_old_data_dir(tmp_path, monkeypatch):
    """Through the real app: the old live key is accepted, the revoked one refused, and
    /admin/usage reports the old usage plus the new request."""
    monkeypatch.setattr(UsageRecorder, "every", 0.01)  # flush at once, not after a second
    old_data_dir(tmp_path / ".gateway", tmp_path / "gateway.yaml")
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    async with app_client(CONFIG, tmp_path) as client:
        ok = await client.post("/v1/chat/completions", json=body,
                               headers={"Authorization": f"Bearer {LIVE}"})
        assert ok.status_code == 200, ok.text
        refused = await client.post("/v1/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {REVOKED}"})
        assert refused.status_code == 401
        deadline = time.monotonic() + 10
        while True:  # bounded: the flusher writes within a few ticks
            usage = (await client.get("/admin/usage?period=all&group_by=day,key")).json()
            rows = [(r["day"], r["key"], r["requests"]) for r in usage["usage"]]
            if len(rows) == 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
    assert rows[0] == ("2026-01-01", "live", 4) and rows[1][1:] == ("live", 1), usage
