"""Fail closed: when the vault's master key is wrong, when files.db is damaged, when the disk
is full (RLIMIT_FSIZE), the files, batches and responses endpoints answer a clear error in
OpenAI's shape: never a hang, never plaintext on disk, never another key's data."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import resource
import signal

import pytest

KEYS = {"alice": "sk-alice-closed-0123456789", "bob": "sk-bob-closed-9876543210"}
MARKER = b"PLAINTEXT-MARKER-closed-4e1f"

CONFIG = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  demo: {{type: mock}}
routes:
  chat: {{target: {{provider: demo, model: m}}}}
files: {{max_size: 4MB}}
keys:
  alice: {{key_sha256: {alice}}}
  bob: {{key_sha256: {bob}}}
"""


def master(n: int) -> str:
    return base64.b64encode(bytes([n]) * 32).decode()


def auth(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[name]}"}


def config(tmp_path) -> str:
    return CONFIG.format(data=tmp_path / "data", **{
        name: hashlib.sha256(raw.encode()).hexdigest() for name, raw in KEYS.items()})


def batch_file() -> bytes:
    return json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "chat", "messages": [{"role": "user",
                                                               "content": "x"}]}}).encode()


def assert_clear_error(answer, statuses=(500, 503, 507)) -> dict:
    assert answer.status_code in statuses, (answer.status_code, answer.text[:300])
    error = answer.json()["error"]
    assert error["message"] and "internal error in the gateway" not in error["message"], error
    assert MARKER not in answer.content
    return error


def damage(db) -> None:
    """``db`` (and its WAL) replaced by bytes that are no SQLite database."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(db) + suffix)
    db.write_bytes(b"this is not a database " * 400)


def no_plaintext_at_rest(tmp_path) -> None:
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert MARKER not in path.read_bytes(), path


def test_a_wrong_master_key_never_serves_or_stores_plaintext(gateway_app, tmp_path):
    """Files stored under one master key: the gateway started with another refuses to read
    them, to store new ones, and to batch them, each with a clear error naming the vault."""
    first = gateway_app(config(tmp_path), env={"GATEWAY_MASTER_KEY": master(1)})
    made = first.post("/v1/files", headers=auth("alice"), data={"purpose": "batch"},
                      files={"file": ("b.jsonl", batch_file())}).json()
    text = first.post("/v1/files", headers=auth("alice"), data={"purpose": "user_data"},
                      files={"file": ("t.txt", MARKER)}).json()
    first.stop()
    second = gateway_app(config(tmp_path), name="second.yaml",
                         env={"GATEWAY_MASTER_KEY": master(2)})
    content = second.get(f"/v1/files/{text['id']}/content", headers=auth("alice"))
    assert "vault" in assert_clear_error(content)["message"]
    upload = second.post("/v1/files", headers=auth("alice"), data={"purpose": "user_data"},
                         files={"file": ("n.txt", MARKER)})
    assert_clear_error(upload)
    batch = second.post("/v1/batches", headers=auth("alice"), json={
        "input_file_id": made["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"})
    assert_clear_error(batch)
    assert second.get(f"/v1/files/{text['id']}/content", headers=auth("bob")).status_code == 404
    assert sorted(p.name for p in (tmp_path / "data" / "files").iterdir()) == sorted(
        [made["id"], text["id"]])  # the refused upload left nothing
    no_plaintext_at_rest(tmp_path)


def test_a_damaged_files_db_is_a_clear_error(gateway_app, tmp_path):
    """files.db overwritten with garbage: every files and batches endpoint answers a clear
    error (no hang, no 'internal error'); the chat path is not affected."""
    gw = gateway_app(config(tmp_path))
    made = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "user_data"},
                   files={"file": ("t.txt", MARKER)}).json()
    gw.stop()
    damage(tmp_path / "data" / "files.db")
    gw = gateway_app(config(tmp_path), name="second.yaml")
    for method, path in (("GET", "/v1/files"), ("GET", f"/v1/files/{made['id']}"),
                         ("GET", f"/v1/files/{made['id']}/content"),
                         ("DELETE", f"/v1/files/{made['id']}"), ("GET", "/v1/batches"),
                         ("GET", "/v1/batches/batch_x")):
        assert_clear_error(gw.request(method, path, headers=auth("alice")))
    upload = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "user_data"},
                     files={"file": ("n.txt", MARKER)})
    assert_clear_error(upload)
    assert gw.post("/v1/chat/completions", headers=auth("alice"), json={
        "model": "chat", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    no_plaintext_at_rest(tmp_path)


@pytest.fixture
def file_size_limit():
    """Files of this process cannot grow past the limit set (as on a full disk: EFBIG instead
    of ENOSPC); SIGXFSZ ignored so the write fails instead of killing the process."""
    saved = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def limit(size: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, saved[1]))

    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, saved)
        signal.signal(signal.SIGXFSZ, handler)


def test_a_full_disk_is_a_clear_error_and_leaves_nothing(gateway_app, tmp_path, file_size_limit):
    """An upload that cannot be written whole answers 507 naming the storage; its partial
    ciphertext is removed; the gateway goes on serving once there is room again."""
    gw = gateway_app(config(tmp_path))
    assert gw.get("/v1/files", headers=auth("alice")).status_code == 200  # databases made
    file_size_limit(512 * 1024)
    answer = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "user_data"},
                     files={"file": ("big.bin", MARKER * (1024 * 1024 // len(MARKER)))})
    error = assert_clear_error(answer, (507,))
    assert error["code"] == "storage_full", error
    assert list((tmp_path / "data" / "files").iterdir()) == []
    file_size_limit(resource.RLIM_INFINITY)
    again = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "user_data"},
                    files={"file": ("small.bin", MARKER)})
    assert again.status_code == 200, again.text
    no_plaintext_at_rest(tmp_path)


def test_a_damaged_responses_db_is_a_clear_error(gateway_app, tmp_path):
    """responses.db overwritten with garbage: retrieving, listing input items, deleting and
    continuing a stored response answer a clear error, not 'internal error'."""
    gw = gateway_app(config(tmp_path))
    made = gw.post("/v1/responses", headers=auth("alice"), json={"model": "chat",
                                                                 "input": "hi"}).json()
    gw.stop()
    damage(tmp_path / "data" / "responses.db")
    gw = gateway_app(config(tmp_path), name="second.yaml")
    for method, path in (("GET", f"/v1/responses/{made['id']}"),
                         ("GET", f"/v1/responses/{made['id']}/input_items"),
                         ("DELETE", f"/v1/responses/{made['id']}")):
        assert_clear_error(gw.request(method, path, headers=auth("alice")))
    continued = gw.post("/v1/responses", headers=auth("alice"), json={
        "model": "chat", "input": "more", "previous_response_id": made["id"]})
    assert_clear_error(continued)


UPSTREAM_CONFIG = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  up: {{type: openai-compatible, base_url: "{url}"}}
routes:
  chat: {{target: {{provider: up, model: m}}}}
batches: {{concurrency: 2}}
"""


def test_a_batch_that_cannot_record_backs_off(gateway_app, upstream, tmp_path, monkeypatch):
    """When the answers cannot be recorded (a full disk, a locked files.db) the batch task
    fails; it is started again after a growing pause, not at every tick: each start resends
    the lines in flight, so a tight loop spent money upstream for as long as the disk was
    full. Once recording works again, the batch completes."""
    import sqlite3
    import time

    from gateway.store import files_db

    real = files_db.save_results
    failing = {"on": True}

    def save_results(conn, batch_id, results):
        if failing["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        return real(conn, batch_id, results)

    monkeypatch.setattr(files_db, "save_results", save_results)
    gw = gateway_app(UPSTREAM_CONFIG.format(data=tmp_path / "data", url=upstream.base_url))
    lines = b"".join(json.dumps({"custom_id": f"r{i}", "method": "POST",
                                 "url": "/v1/chat/completions", "body": {
                                     "model": "chat", "messages": [
                                         {"role": "user", "content": "x"}]}}).encode() + b"\n"
                     for i in range(4))
    uploaded = gw.post("/v1/files", data={"purpose": "batch"},
                       files={"file": ("b.jsonl", lines)}).json()
    batch = gw.post("/v1/batches", json={"input_file_id": uploaded["id"],
                                         "endpoint": "/v1/chat/completions",
                                         "completion_window": "24h"}).json()
    time.sleep(2)  # the window counted: a start sends the 4 lines; at most 2 starts fit in it
    sent = len(upstream.requests)  # (without the pause, about 16 in 2 s)
    assert 2 <= sent <= 8, f"{sent} upstream requests in 2 s while nothing could be recorded"
    failing["on"] = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = gw.get(f"/v1/batches/{batch['id']}").json()
        if state["status"] == "completed":
            break
        time.sleep(0.1)
    assert state["status"] == "completed", state
    assert state["request_counts"]["completed"] == 4


def test_a_locked_files_db_is_a_clear_error(gateway_app, tmp_path, monkeypatch):
    """Another process holding files.db's write lock past the busy timeout (shortened here
    to 0.3 s): an upload answers 503 storage_unavailable and keeps nothing, a list (the store's
    writer runs it in a transaction too) answers or says the same, neither hangs; once the
    lock is gone, uploads work."""
    import sqlite3
    import time

    from gateway.store import sqlite as store_sqlite

    monkeypatch.setattr(store_sqlite.connect, "__kwdefaults__", {"timeout": 0.3})
    gw = gateway_app(config(tmp_path))
    first = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "user_data"},
                    files={"file": ("a.txt", b"first")})
    assert first.status_code == 200, first.text
    other = sqlite3.connect(tmp_path / "data" / "files.db", timeout=0.1)
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        locked = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "user_data"},
                         files={"file": ("b.txt", MARKER)})
        assert assert_clear_error(locked, (503,))["code"] == "storage_unavailable"
        assert time.monotonic() - started < 5
        started = time.monotonic()
        listed = gw.get("/v1/files", headers=auth("alice"))  # the writer's jobs lock too
        assert listed.status_code in (200, 503), listed.text
        assert time.monotonic() - started < 5
    finally:
        other.rollback()
        other.close()
    assert sorted(p.name for p in (tmp_path / "data" / "files").iterdir()) == [
        first.json()["id"]]
    again = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "user_data"},
                    files={"file": ("c.txt", b"third")})
    assert again.status_code == 200, again.text


def test_a_storage_failure_names_no_path_of_the_server(gateway_app, tmp_path):
    """The files directory replaced by a plain file: an upload cannot be written. The caller
    is told 503 storage_unavailable and why in general terms; the server's paths stay in
    the log (which names the file), out of the answer."""
    gw = gateway_app(config(tmp_path))
    first = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "user_data"},
                    files={"file": ("a.txt", b"first")})
    assert first.status_code == 200, first.text
    files = tmp_path / "data" / "files"
    for path in files.iterdir():
        path.unlink()
    files.rmdir()
    files.write_bytes(b"not a directory")
    answer = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "user_data"},
                     files={"file": ("a.txt", MARKER)})
    error = assert_clear_error(answer, (503,))
    assert error["code"] == "storage_unavailable", error
    assert str(tmp_path) not in answer.text and "/data/" not in answer.text, answer.text
    assert str(files) in gw.log()


def test_a_damaged_key_store_refuses_every_caller_with_503(gateway_app, tmp_path):
    """Keys created at run time live in keys.db. When it cannot be read, nobody is let in,
    with or without a key (fail closed), and the answer says the gateway cannot check keys
    (503, never 'internal error'); the gateway is back once the file is restored."""
    from gateway.keys.store import KeyStore, keystore_path

    data = tmp_path / "data"
    raw, _ = KeyStore(keystore_path(str(data))).create("runtime")
    plain = CONFIG.split("keys:")[0].format(data=data)
    path = keystore_path(str(data))
    saved = type(tmp_path)(path).read_bytes()
    damage(type(tmp_path)(path))
    gw = gateway_app(plain)
    for headers in ({"authorization": f"Bearer {raw}"}, {}):
        answer = gw.post("/v1/chat/completions", headers=headers, json={
            "model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        error = assert_clear_error(answer, (503,))
        assert error["code"] == "key_store_unavailable", error
        assert str(tmp_path) not in answer.text
    assert "Traceback" not in gw.log()
    type(tmp_path)(path).write_bytes(saved)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)
    ok = gw.post("/v1/chat/completions", headers={"authorization": f"Bearer {raw}"}, json={
        "model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200, ok.text
