"""files.max_bytes_per_key: a key's files together may hold at most so many bytes. An upload
that would pass it is refused (413 storage_quota_exceeded, naming the quota and what the key
holds) before its body is read when the declared size or a full quota says so, else as
soon as its bytes cross it; nothing of it is kept. Deleting files makes room again."""

from __future__ import annotations

import hashlib
import socket
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from gateway.units import size_text

from ..inprocess_gateway import poll
from .test_files_api import batch_line, jsonl

KB = 1024
KEY_A, KEY_B, KEY_BIG = "quota-key-aaaa-1234", "quota-key-bbbb-1234", "quota-key-big-1234"
ADMIN = "quota-admin-token-1234"
CONFIG = f"""
version: 1
providers:
  demo: {{type: mock}}
routes:
  chat: {{target: {{provider: demo, model: m}}}}
files: {{max_size: 1MB, max_bytes_per_key: 300KB}}
keys:
  a: {{key_sha256: {hashlib.sha256(KEY_A.encode()).hexdigest()}}}
  b: {{key_sha256: {hashlib.sha256(KEY_B.encode()).hexdigest()}}}
  big:
    key_sha256: {hashlib.sha256(KEY_BIG.encode()).hexdigest()}
    limits: {{requests_per_minute: 100, file_storage: 500KB}}
server: {{data_dir: "{{data}}", admin_token: "{ADMIN}"}}
"""


@pytest.fixture
def gw(gateway_app, tmp_path):
    return gateway_app(CONFIG.replace("{data}", str(tmp_path / "data")))


def stored(tmp_path) -> list[str]:
    folder = tmp_path / "data" / "files"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def over_quota(answer, holds: str) -> None:
    assert answer.status_code == 413, (answer.status_code, answer.text)
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("storage_quota_exceeded", "file")
    assert "key 'a' may keep 300KB of files (files.max_bytes_per_key)" in error["message"]
    assert f"holds {holds}" in error["message"], error["message"]


def test_an_upload_past_the_quota_is_refused_and_deleting_makes_room(gw, tmp_path):
    """200 KB fits in 300 KB; another 200 KB does not (413, nothing kept), for the same key
    only; once the first file is deleted it fits."""
    a = gw.openai(KEY_A).with_options(max_retries=0)
    first = a.files.create(file=("one.bin", b"1" * 200 * KB), purpose="user_data")
    with pytest.raises(openai.APIStatusError) as refused:
        a.files.create(file=("two.bin", b"2" * 200 * KB), purpose="user_data")
    over_quota(refused.value.response, "200KB")
    assert stored(tmp_path) == [first.id]
    assert [f.id for f in a.files.list()] == [first.id]
    other = gw.openai(KEY_B).files.create(file=("b.bin", b"b" * 250 * KB), purpose="user_data")
    assert sorted(stored(tmp_path)) == sorted([first.id, other.id])
    a.files.delete(first.id)
    second = a.files.create(file=("two.bin", b"2" * 200 * KB), purpose="user_data")
    assert second.bytes == 200 * KB


def test_a_streamed_upload_stops_as_soon_as_it_crosses_the_quota(gw, tmp_path):
    """A chunked upload (no size declared) of 1 MB by a key holding 200 KB: the 413 comes
    while the client is still sending (after about 100 KB of the file), the partial file
    is removed, and the next upload that fits works."""
    a = gw.openai(KEY_A)
    held = a.files.create(file=("one.bin", b"1" * 200 * KB), purpose="user_data")
    url = gw.listen()
    port = int(url.rsplit(":", 1)[1])
    boundary = "quotaBoundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
            f"user_data\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer " + KEY_A.encode() + b"\r\n"
                     b"Content-Type: multipart/form-data; boundary=" + boundary.encode()
                     + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        chunk = b"x" * 16 * KB
        answer = b""
        for _ in range(20):  # 320 KB at most: the rest of the 1 MB is never sent
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.settimeout(0.2)
            try:
                answer = conn.recv(65536)
            except TimeoutError:
                continue
            break
        conn.settimeout(5)
        while answer and b"\r\n\r\n" in answer and b"storage_quota_exceeded" not in answer:
            more = conn.recv(65536)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"storage_quota_exceeded" in answer and b"holds 200KB" in answer
    assert stored(tmp_path) == [held.id]
    fits = a.files.create(file=("small.bin", b"s" * 90 * KB), purpose="user_data")
    assert sorted(stored(tmp_path)) == sorted([held.id, fits.id])


def test_uploads_together_cannot_pass_the_quota(gw, tmp_path):
    """Three 120 KB uploads of one key at once, in a 300 KB quota: two are kept, the third
    is refused, whichever order they end in."""
    a = gw.openai(KEY_A).with_options(max_retries=0)

    def upload(i: int):
        try:
            return a.files.create(file=(f"{i}.bin", bytes([48 + i]) * 120 * KB),
                                  purpose="user_data")
        except openai.APIStatusError as exc:
            return exc.response

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(upload, range(3)))
    kept = [r for r in results if not hasattr(r, "status_code")]
    refused = [r for r in results if hasattr(r, "status_code")]
    assert len(kept) == 2 and len(refused) == 1
    assert refused[0].status_code == 413
    assert refused[0].json()["error"]["code"] == "storage_quota_exceeded"
    assert sorted(stored(tmp_path)) == sorted(f.id for f in kept)


def test_the_quota_must_be_a_size(gateway_app, tmp_path):
    """files.max_bytes_per_key is checked like every size: a config error at its line."""
    bad = CONFIG.replace("max_bytes_per_key: 300KB", "max_bytes_per_key: lots")
    with pytest.raises(Exception) as failed:
        gateway_app(bad.replace("{data}", str(tmp_path / "data")))
    assert "max_bytes_per_key" in str(failed.value)


def test_batch_outputs_count_but_are_never_refused(gw, tmp_path):
    """A batch's output file is written even when it takes its key past the quota, and it
    counts: the key's next upload is refused, naming what its files hold."""
    a = gw.openai(KEY_A).with_options(max_retries=0)
    lines = [batch_line(i) for i in range(20)]
    made = a.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    room = 300 * KB - made.bytes - 10  # 10 bytes left before the batch runs
    filler = a.files.create(file=("fill.bin", b"p" * room), purpose="user_data")
    batch = a.batches.create(input_file_id=made.id, endpoint="/v1/chat/completions",
                             completion_window="24h")
    done = poll(lambda: a.batches.retrieve(batch.id), lambda b: b.status == "completed", 20,
                "the batch did not complete", every=0.05)
    output = a.files.retrieve(done.output_file_id)
    held = made.bytes + filler.bytes + output.bytes
    assert held > 300 * KB  # the output was written past the quota
    with pytest.raises(openai.APIStatusError) as refused:
        a.files.create(file=("one.bin", b"1"), purpose="user_data")
    over_quota(refused.value.response, size_text(held))


def test_a_keys_own_quota_overrides_the_default(gw, tmp_path):
    """keys.NAME.limits.file_storage replaces files.max_bytes_per_key for that key (more or
    less); a key created at run time may carry one too (POST /admin/keys), and the message
    names the setting that applies."""
    big = gw.openai(KEY_BIG).with_options(max_retries=0)
    kept = big.files.create(file=("one.bin", b"1" * 400 * KB), purpose="user_data")
    assert kept.bytes == 400 * KB  # past the default 300KB, within its own 500KB
    with pytest.raises(openai.APIStatusError) as refused:
        big.files.create(file=("two.bin", b"2" * 200 * KB), purpose="user_data")
    assert refused.value.status_code == 413
    assert ("key 'big' may keep 500KB of files (keys.big.limits.file_storage) and holds 400KB"
            in refused.value.message)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    created = gw.post("/admin/keys", headers=admin, json={
        "name": "small", "limits": {"file_storage": "100KB"}})
    assert created.status_code in (200, 201), created.text
    small = gw.openai(created.json()["key"]).with_options(max_retries=0)
    with pytest.raises(openai.APIStatusError) as refused:
        small.files.create(file=("s.bin", b"s" * 150 * KB), purpose="user_data")
    assert "key 'small' may keep 100KB of files (keys.small.limits.file_storage)" \
        in refused.value.message
    assert small.files.create(file=("t.bin", b"t" * 90 * KB), purpose="user_data").bytes \
        == 90 * KB
    bad = gw.post("/admin/keys", headers=admin, json={"name": "odd",
                                                      "limits": {"file_storage": "lots"}})
    assert bad.status_code == 400 and "file_storage" in bad.text
