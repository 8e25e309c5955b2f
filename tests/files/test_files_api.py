"""/v1/files through the real app with the official openai client: upload, list, retrieve,
content and delete; the contents encrypted on disk; files owned by the key that uploaded them;
JSONL of batch and fine-tune files checked line by line; the size limit."""

from __future__ import annotations

import hashlib
import json

import openai
import pytest

from gateway.files import crypt

CONFIG = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  demo: {{type: mock}}
routes:
  chat: {{target: {{provider: demo, model: m}}}}
files: {{max_size: 300KB}}
"""


def batch_line(i: int, **changes) -> dict:
    line = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "chat", "messages": [{"role": "user", "content": f"hi {i}"}]}}
    line.update(changes)
    return line


def jsonl(lines) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


@pytest.fixture
def gw(gateway_app, tmp_path):
    return gateway_app(CONFIG.format(data=tmp_path / "data"))


def test_round_trip_encrypted_at_rest(gw, tmp_path):
    """What is uploaded comes back byte for byte; on disk it is ciphertext only, in 64 KiB
    frames (the plaintext appears nowhere in the data directory)."""
    marker = b"TOP-SECRET-PLAINTEXT-MARKER"
    content = (marker + b" " + bytes(range(256)) * 4 + b"\n") * 200  # ~200 KB, several frames
    client = gw.openai()
    made = client.files.create(file=("notes.bin", content), purpose="user_data")
    assert made.object == "file" and made.id.startswith("file-")
    assert (made.bytes, made.filename, made.purpose, made.status) == (
        len(content), "notes.bin", "user_data", "processed")
    assert client.files.content(made.id).read() == content
    assert client.files.retrieve(made.id).bytes == len(content)
    stored = (tmp_path / "data" / "files" / made.id).read_bytes()
    assert stored.startswith(crypt.MAGIC) and len(stored) > len(content)
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert marker not in path.read_bytes(), path


def test_list_filter_and_delete(gw):
    """GET /v1/files lists the caller's files newest first, by purpose, with limit and after;
    DELETE removes one (then 404)."""
    client = gw.openai()
    a = client.files.create(file=("a.txt", b"a"), purpose="user_data")
    b = client.files.create(file=("b.jsonl", jsonl([batch_line(1)])), purpose="batch")
    c = client.files.create(file=("c.txt", b"c"), purpose="user_data")
    listed = gw.get("/v1/files").json()
    assert [f["id"] for f in listed["data"]] == [c.id, b.id, a.id]
    assert [f.id for f in client.files.list(purpose="batch")] == [b.id]
    first = gw.get("/v1/files", params={"limit": 1}).json()
    assert first["has_more"] and first["data"][0]["id"] == c.id
    rest = gw.get("/v1/files", params={"limit": 5, "after": c.id}).json()
    assert [f["id"] for f in rest["data"]] == [b.id, a.id] and not rest["has_more"]
    deleted = client.files.delete(a.id)
    assert deleted.deleted and deleted.id == a.id
    missing = gw.get(f"/v1/files/{a.id}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "file_not_found"
    assert gw.get("/v1/files", params={"limit": 0}).status_code == 400


def test_files_belong_to_their_key(gateway_app, tmp_path):
    """A file uploaded with one key is invisible to another: 404 on retrieve, content and
    delete, absent from its list; without a key: 401."""
    digest = {}
    for name, raw in (("alice", "sk-alice-key"), ("bob", "sk-bob-key")):
        digest[name] = hashlib.sha256(raw.encode()).hexdigest()
    gw = gateway_app(CONFIG.format(data=tmp_path / "data") + f"""
keys:
  alice: {{key_sha256: {digest['alice']}}}
  bob: {{key_sha256: {digest['bob']}}}
""")
    alice, bob = gw.openai("sk-alice-key"), gw.openai("sk-bob-key")
    made = alice.files.create(file=("a.txt", b"alice's"), purpose="user_data")
    for call in (lambda: bob.files.retrieve(made.id), lambda: bob.files.content(made.id),
                 lambda: bob.files.delete(made.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert list(bob.files.list()) == []
    assert alice.files.content(made.id).read() == b"alice's"
    assert gw.get("/v1/files").status_code == 401


@pytest.mark.parametrize(("purpose", "lines", "expected"), [
    ("batch", [batch_line(1), "{not json", batch_line(3, method="GET")],
     ["line 2: not valid JSON", "line 3: 'method' must be \"POST\""]),
    ("batch", [batch_line(1), batch_line(1)], ["line 2: custom_id 'req-1' is used already on line 1"]),
    ("batch", [batch_line(1), batch_line(2, url="/v1/embeddings")],
     ["line 2: 'url' is /v1/embeddings, but earlier lines use /v1/chat/completions"]),
    ("batch", [batch_line(1, body={"messages": []})], ["line 1: 'body.model' must be"]),
    ("batch", [[1, 2]], ["line 1: must be a JSON object"]),
    ("fine-tune", [{"messages": [{"role": "user", "content": "x"}]}, {"text": "x"}],
     ["line 2: must hold 'messages'"]),
])
def test_malformed_jsonl_names_the_lines(gw, tmp_path, purpose, lines, expected):
    """A batch or fine-tune file with bad lines is refused with 400 naming each bad line,
    and nothing is kept."""
    raw = b"".join((line if isinstance(line, str) else json.dumps(line)).encode() + b"\n"
                   for line in lines)
    answer = gw.post("/v1/files", data={"purpose": purpose}, files={"file": ("x.jsonl", raw)})
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]["message"]
    for part in expected:
        assert part in message
    assert gw.get("/v1/files").json()["data"] == []
    assert list((tmp_path / "data" / "files").iterdir()) == []


def test_purpose_after_the_file_is_checked_too(gw):
    """curl -F file=@x -F purpose=batch sends the file first: its lines are still checked."""
    boundary = "XyZ"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\""
            f"\r\nContent-Type: application/jsonl\r\n\r\nnot json\n\r\n--{boundary}\r\n"
            f"Content-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}--\r\n")
    answer = gw.post("/v1/files", content=body.encode(),
                     headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 400 and "line 1: not valid JSON" in answer.text


def test_bad_uploads_are_clear_4xx(gw):
    """Too large -> 413; unknown purpose, no file, not multipart -> 400/415."""
    big = gw.post("/v1/files", data={"purpose": "user_data"},
                  files={"file": ("big.bin", b"x" * 400_000)})
    assert big.status_code == 413 and big.json()["error"]["code"] == "file_too_large"
    wrong = gw.post("/v1/files", data={"purpose": "nonsense"}, files={"file": ("a", b"a")})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "purpose"
    none = gw.post("/v1/files", data={"purpose": "batch"}, files={"other": ("a", b"a")})
    assert none.status_code == 400 and none.json()["error"]["code"] == "missing_file"
    assert gw.post("/v1/files", json={"purpose": "batch"}).status_code == 415
    broken = gw.post("/v1/files", content=b"--b\r\nnonsense",
                     headers={"content-type": "multipart/form-data; boundary=b"})
    assert broken.status_code == 400


def test_an_unreadable_vault_is_503_and_tells_the_caller_nothing_of_the_server(gateway_app, tmp_path):
    """The files key lives in the vault. When the vault cannot be read (damaged here) an
    upload is 503 files_key_unavailable: the operator must act, the caller can only retry
    later. The answer names no path of the server; the log says what is wrong and where."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "vault.json").write_text("not a vault")
    gw = gateway_app(CONFIG.format(data=data))
    answer = gw.request("POST", "/v1/files", files={"file": ("a.jsonl", b"{}\n")},
                              data={"purpose": "user_data"})
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "files_key_unavailable"
    assert str(tmp_path) not in answer.text and "vault.json" not in answer.text
    assert "vault.json" in gw.log() and "damaged" in gw.log()
