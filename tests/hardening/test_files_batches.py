"""Trust review of /v1/files, /v1/batches, /v1/fine_tuning/jobs and /v1/responses: what a
caller with a valid key (or none) can make of them.

- isolation: key B never reads, lists, deletes, cancels or uses (``input_file_id``,
  ``training_file``, ``previous_response_id``) anything of key A; neither when the keys come
  from a plugin authenticator without hashes;
- hostile input: multipart bodies (boundaries, parts, header sizes, file names with ``../``
  and NUL, purposes), batch JSONL (huge lines, deep nesting, non-UTF-8, duplicate custom_id),
  ids in paths, query parameters, bodies over ``server.max_body``: a clear 4xx, never a 5xx, a
  hang or a file outside the data directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ..files.test_files_api import batch_line, jsonl
from .test_request_properties import SETTINGS

KEYS = {"alice": "sk-alice-trust-0123456789", "bob": "sk-bob-trust-9876543210"}

CONFIG = """
version: 1
server: {{data_dir: "{data}", max_body: 64KB}}
providers:
  demo: {{type: mock}}
  tuner: {{type: openai, base_url: "http://127.0.0.1:9/v1", api_key: sk-never-reached-0000, fine_tuning: true}}
routes:
  chat: {{target: {{provider: demo, model: m}}}}
  tune: {{target: {{provider: tuner, model: gpt-4o-mini}}}}
files: {{max_size: 200KB}}
keys:
  alice: {{key_sha256: {alice}}}
  bob: {{key_sha256: {bob}}}
"""


def _sha(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def auth(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture
def gw(gateway_app, tmp_path):
    return gateway_app(CONFIG.format(data=tmp_path / "data", alice=_sha(KEYS["alice"]),
                                     bob=_sha(KEYS["bob"])))


def stored_names(tmp_path: Path) -> list[str]:
    """Every file name under the data directory, relative to it; and the names outside it
    (beside the data directory) that the test did not put there."""
    data = tmp_path / "data"
    return sorted(str(p.relative_to(data)) for p in data.rglob("*"))


def assert_contained(tmp_path: Path) -> None:
    """Stored files are named by the gateway (file-<hex>) and nothing was written beside the
    data directory."""
    blobs = tmp_path / "data" / "files"
    if blobs.exists():
        for path in blobs.iterdir():
            assert re.fullmatch(r"file-[0-9a-f]{24}", path.name), path
    allowed = {"data", "gateway.yaml", "gateway.log"}
    assert {p.name for p in tmp_path.iterdir()} <= allowed, sorted(tmp_path.iterdir())


# -- isolation ---------------------------------------------------------------------------------


def test_key_b_cannot_touch_key_a_files_batches_jobs_or_responses(gw, tmp_path):
    """Everything of alice's is a 404 (never a 403 that confirms it exists) for bob, through
    every path and every field that names it; bob's lists are empty."""
    alice, bob = auth("alice"), auth("bob")
    batch_file = gw.post("/v1/files", headers=alice, data={"purpose": "batch"},
                         files={"file": ("b.jsonl", jsonl([batch_line(1)]))}).json()
    tune_file = gw.post("/v1/files", headers=alice, data={"purpose": "fine-tune"},
                        files={"file": ("t.jsonl", jsonl([{"messages": [
                            {"role": "user", "content": "x"}]}]))}).json()
    batch = gw.post("/v1/batches", headers=alice, json={
        "input_file_id": batch_file["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"})
    assert batch.status_code == 200, batch.text
    batch_id = batch.json()["id"]
    response = gw.post("/v1/responses", headers=alice, json={"model": "chat", "input": "hi"})
    assert response.status_code == 200, response.text
    response_id = response.json()["id"]

    for method, path in (("GET", f"/v1/files/{batch_file['id']}"),
                         ("GET", f"/v1/files/{batch_file['id']}/content"),
                         ("DELETE", f"/v1/files/{batch_file['id']}"),
                         ("GET", f"/v1/batches/{batch_id}"),
                         ("POST", f"/v1/batches/{batch_id}/cancel"),
                         ("GET", f"/v1/responses/{response_id}"),
                         ("GET", f"/v1/responses/{response_id}/input_items"),
                         ("DELETE", f"/v1/responses/{response_id}")):
        answer = gw.request(method, path, headers=bob)
        assert answer.status_code == 404, (method, path, answer.text)
    as_input = gw.post("/v1/batches", headers=bob, json={
        "input_file_id": batch_file["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"})
    assert as_input.status_code == 404 and as_input.json()["error"]["param"] == "input_file_id"
    training = gw.post("/v1/fine_tuning/jobs", headers=bob,
                       json={"model": "tune", "training_file": tune_file["id"]})
    assert training.status_code == 404 and training.json()["error"]["param"] == "training_file"
    validation = gw.post("/v1/fine_tuning/jobs", headers=bob, json={
        "model": "tune", "training_file": "file-0", "validation_file": tune_file["id"]})
    assert validation.status_code == 404
    continued = gw.post("/v1/responses", headers=bob, json={
        "model": "chat", "input": "and?", "previous_response_id": response_id})
    assert continued.status_code == 404, continued.text
    for path in ("/v1/files", "/v1/batches", "/v1/fine_tuning/jobs"):
        listed = gw.get(path, headers=bob)
        assert listed.status_code == 200 and listed.json()["data"] == [], (path, listed.text)
    # Alice still has all of it.
    assert gw.get(f"/v1/files/{batch_file['id']}/content", headers=alice).status_code == 200
    assert gw.get(f"/v1/batches/{batch_id}", headers=alice).status_code == 200
    assert gw.get(f"/v1/responses/{response_id}", headers=alice).status_code == 200
    for path in ("/v1/files", "/v1/batches", "/v1/responses/x", "/v1/fine_tuning/jobs"):
        assert gw.get(path).status_code == 401, path


PLUGIN_AUTH = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  demo: {{type: mock}}
routes:
  chat: {{target: {{provider: demo, model: m}}}}
plugins:
  - name: test-ops
    config: {{auth: true}}
"""


def test_plugin_authenticator_keys_are_kept_apart(gateway_app, tmp_path):
    """Keys from a plugin authenticator carry no hash (docs/plugins.md's example: sha256="");
    their owners are told apart by name: team b never reads or continues team a's stored
    response, nor its files."""
    gw = gateway_app(PLUGIN_AUTH.format(data=tmp_path / "data"))
    a, b = {"x-test-user": "team-a"}, {"x-test-user": "team-b"}
    made = gw.post("/v1/responses", headers=a, json={"model": "chat", "input": "secret plan"})
    assert made.status_code == 200, made.text
    response_id = made.json()["id"]
    assert gw.get(f"/v1/responses/{response_id}", headers=a).status_code == 200
    for method, path in (("GET", f"/v1/responses/{response_id}"),
                         ("GET", f"/v1/responses/{response_id}/input_items")):
        answer = gw.request(method, path, headers=b)
        assert answer.status_code == 404, (path, answer.text)
    continued = gw.post("/v1/responses", headers=b, json={
        "model": "chat", "input": "go on", "previous_response_id": response_id})
    assert continued.status_code == 404, continued.text
    assert gw.delete(f"/v1/responses/{response_id}", headers=b).status_code == 404
    assert gw.get(f"/v1/responses/{response_id}", headers=a).status_code == 200
    uploaded = gw.post("/v1/files", headers=a, data={"purpose": "user_data"},
                       files={"file": ("a.txt", b"team a only")}).json()
    assert gw.get(f"/v1/files/{uploaded['id']}/content", headers=b).status_code == 404
    assert gw.get("/v1/files", headers=b).json()["data"] == []


# -- hostile multipart uploads ----------------------------------------------------------------


def _multipart(boundary: bytes, parts: list[tuple[bytes, bytes]], close: bool) -> bytes:
    out = b""
    for headers, data in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + data + b"\r\n"
    if close:
        out += b"--" + boundary + b"--\r\n"
    return out


NAMES = st.sampled_from([b"../../escape.txt", b"..", b"a\x00b.jsonl", b"/etc/passwd",
                         b"..\\..\\win.txt", "\u202egnp.exe".encode(), b"x" * 600, b"",
                         b"ok.jsonl", b"\xff\xfe", b"\x1b[31mred\x1b[0m.jsonl"])
PURPOSES = st.sampled_from([b"batch", b"fine-tune", b"user_data", b"batch_output", b"",
                            b"assistants\x00", b"x" * 5000, "b\u00e4tch".encode()])
DISPOSITION = st.sampled_from([
    b'Content-Disposition: form-data; name="file"; filename="%s"',
    b"Content-Disposition: form-data; name=file; filename=%s",
    b'Content-Disposition: form-data; name="file"; filename*=UTF-8\'\'%s',
    b'Content-Disposition: attachment; filename="%s"', b"Content-Type: text/plain",
    b'Content-Disposition: form-data; name="file"\r\nContent-Type: application/jsonl; x=%s'])
CONTENTS = st.sampled_from([jsonl([batch_line(1)]), jsonl([batch_line(1), batch_line(1)]),
                            b"\xff\xfe\x00not utf-8\n", b"[" * 5000 + b"]" * 5000 + b"\n",
                            b"", b"{}\n" * 50, b"--boundary-lookalike\r\n"])


@given(boundary=st.sampled_from([b"b", b"xYz" * 20, b"a" * 71, b"--", b"b c", b"b=c:'"]),
       name=NAMES, purpose=PURPOSES, disposition=DISPOSITION, content=CONTENTS,
       purpose_first=st.booleans(), extra_file=st.booleans(), close=st.booleans(),
       cut=st.integers(0, 40))
@pytest.mark.no_cover  # generated inputs: see test_request_properties.py
@SETTINGS
def test_any_multipart_upload_is_answered_2xx_or_4xx(gw, tmp_path, boundary, name, purpose,
                                                      disposition, content, purpose_first,
                                                      extra_file, close, cut):
    """Odd boundaries, missing or doubled parts, names with ../ and NUL, purposes not
    allowed, bodies cut short: 200 or a 4xx in OpenAI's shape; stored files keep the
    gateway's own names, inside the data directory."""
    file_part = ((disposition % name) if b"%s" in disposition else disposition, content)
    purpose_part = (b'Content-Disposition: form-data; name="purpose"', purpose)
    parts = [purpose_part, file_part] if purpose_first else [file_part, purpose_part]
    if extra_file:
        parts.append(file_part)
    body = _multipart(boundary, parts, close)
    body = body[:len(body) - cut] if cut else body
    answer = gw.post("/v1/files", content=body, headers={
        **auth("alice"), "content-type": "multipart/form-data; boundary=" +
        boundary.decode("latin-1")})
    assert answer.status_code < 500, answer.text
    assert answer.json().get("error") or answer.json()["object"] == "file"
    if answer.status_code == 200:
        made = answer.json()
        assert "/" not in made["filename"] and made["filename"].isprintable()
        assert made["purpose"] in ("batch", "fine-tune", "user_data")
    assert_contained(tmp_path)


def test_a_filename_keeps_no_control_character(gw):
    """A filename is printed by `gateway files list`: escape sequences and other control or
    format characters (a right-to-left override) are dropped at upload."""
    name = "\x1b]0;owned\x07\x1b[31mred\u202e.txt".encode()
    body = _multipart(b"bnd", [(b'Content-Disposition: form-data; name="purpose"', b"user_data"),
                               (b'Content-Disposition: form-data; name="file"; filename="' + name
                                + b'"', b"x")], close=True)
    made = gw.post("/v1/files", content=body, headers={
        **auth("alice"), "content-type": "multipart/form-data; boundary=bnd"}).json()
    assert made["filename"] == "]0;owned[31mred.txt"
    listed = gw.get("/v1/files", headers=auth("alice")).json()["data"]
    assert [f["filename"] for f in listed] == ["]0;owned[31mred.txt"]


def _chunked(body: bytes):
    """``body`` sent without a Content-Length (chunked), so no length check stops it early."""
    for start in range(0, len(body), 65536):
        yield body[start:start + 65536]


def test_huge_part_headers_are_refused(gw, tmp_path):
    """A part's headers are kept in memory while they arrive: a megabyte of them is a 400,
    not a megabyte held (nor more, for a body without a length)."""
    huge = b'Content-Disposition: form-data; name="file"; filename="a.txt"\r\nX-Pad: ' + \
        b"a" * (1024 * 1024)
    body = _multipart(b"bnd", [(b'Content-Disposition: form-data; name="purpose"', b"user_data"),
                               (huge, b"hello")], True)
    answer = gw.post("/v1/files", content=_chunked(body), headers={
        **auth("alice"), "content-type": "multipart/form-data; boundary=bnd"})
    assert answer.status_code == 400, answer.text[:300]
    assert "header" in answer.json()["error"]["message"]
    # Fields other than the file are held in memory: their number is bounded too (a body
    # without a length is bounded by nothing else).
    many = b"".join(b"--bnd\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\n%s\r\n"
                    % (i, b"v" * 4000) for i in range(2000))
    many += (b'--bnd\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
             b'--bnd\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
             b"hello\r\n--bnd--\r\n")
    answer = gw.post("/v1/files", content=_chunked(many), headers={
        **auth("alice"), "content-type": "multipart/form-data; boundary=bnd"})
    assert answer.status_code == 400, answer.text[:300]
    assert "fields" in answer.json()["error"]["message"], answer.text[:300]
    assert_contained(tmp_path)


# -- batch JSONL -------------------------------------------------------------------------------

LINES = st.sampled_from([
    json.dumps(batch_line(1)).encode(), json.dumps(batch_line(2)).encode(),
    json.dumps(batch_line(1, custom_id="\u0000\ud7ff")).encode(),
    b'{"custom_id": "a", "custom_id": "b", "method": "POST", "url": "/v1/chat/completions", '
    b'"body": {"model": "chat", "messages": []}}',
    b"\xc3\x28", b"\xef\xbb\xbf{}", b'{"a":' * 2000 + b"1" + b"}" * 2000,
    b"[" * 200 + b"]" * 200, b'{"custom_id": 1}', b"null", b"   ", b"\r",
    json.dumps(batch_line(3, url="/v1/embeddings")).encode(),
    json.dumps(batch_line(4, body={"model": "nope", "messages": "x"})).encode(),
    json.dumps(batch_line(5, body={"model": "chat", "stream": True})).encode(),
    json.dumps(batch_line(6, body={"model": ["chat"]})).encode()])


@given(lines=st.lists(LINES, max_size=6), crlf=st.booleans())
@pytest.mark.no_cover  # generated inputs: see test_request_properties.py
@SETTINGS
def test_any_batch_jsonl_is_answered_2xx_or_4xx(gw, tmp_path, lines, crlf):
    """Duplicate custom_ids, deep nesting, non-UTF-8, BOMs, wrong types: the upload is a 200
    or a 400 naming lines; a batch on what was accepted is created, never a 5xx."""
    sep = b"\r\n" if crlf else b"\n"
    answer = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "batch"},
                     files={"file": ("b.jsonl", sep.join(lines))})
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 200:
        made = gw.post("/v1/batches", headers=auth("alice"), json={
            "input_file_id": answer.json()["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h"})
        assert made.status_code in (200, 400), made.text
    assert_contained(tmp_path)


def test_a_huge_batch_line_is_refused_without_holding_it(gateway_app, tmp_path):
    """A line over the 16 MiB line limit is a 400 naming it."""
    gw = gateway_app(CONFIG.replace("max_size: 200KB", "max_size: 40MB").format(
        data=tmp_path / "data", alice=_sha(KEYS["alice"]), bob=_sha(KEYS["bob"])))
    line = b'{"custom_id": "' + b"x" * (17 * 1024 * 1024) + b'"}\n'
    answer = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "batch"},
                     files={"file": ("b.jsonl", line + jsonl([batch_line(2)]))})
    assert answer.status_code == 400, answer.text[:300]
    assert "line 1: longer than" in answer.json()["error"]["message"]
    assert "line 2" not in answer.json()["error"]["message"]


# -- ids, query parameters, bodies --------------------------------------------------------------

IDS = st.sampled_from(["file-../../x", "..", "%2e%2e%2fgateway.yaml", "file-" + "a" * 5000,
                       "\u00e9\u4e2d\U0001f600", "file-%00", "batch_'; DROP TABLE files;--",
                       "resp_%00", " ", "ftjob-" + "9" * 300, "file-0"])
PATHS = st.sampled_from([("GET", "/v1/files/{}"), ("GET", "/v1/files/{}/content"),
                         ("DELETE", "/v1/files/{}"), ("GET", "/v1/batches/{}"),
                         ("POST", "/v1/batches/{}/cancel"), ("GET", "/v1/responses/{}"),
                         ("DELETE", "/v1/responses/{}"), ("GET", "/v1/responses/{}/input_items"),
                         ("GET", "/v1/fine_tuning/jobs/{}"),
                         ("POST", "/v1/fine_tuning/jobs/{}/cancel"),
                         ("GET", "/v1/fine_tuning/jobs/{}/events")])


@given(ident=IDS, where=PATHS)
@pytest.mark.no_cover  # generated inputs: see test_request_properties.py
@SETTINGS
def test_any_id_in_a_path_is_a_404(gw, tmp_path, ident, where):
    """Traversal, very long, unicode or NUL ids: 404 (or 400), never a 5xx or a file read."""
    method, template = where
    answer = gw.request(method, template.format(ident), headers=auth("alice"))
    assert answer.status_code in (400, 404, 405), (method, template, ident, answer.text)
    assert_contained(tmp_path)


QUERIES = st.dictionaries(st.sampled_from(["limit", "after", "order", "purpose"]),
                          st.sampled_from(["-1", "0", "1", "10001", "1e3", "0x10", "", "\x00",
                                           "asc", "desc", "file-../..", "9" * 400, "\u00e9"]),
                          max_size=4)


@given(query=QUERIES, path=st.sampled_from(["/v1/files", "/v1/batches", "/v1/fine_tuning/jobs",
                                            "/admin/logs"]))
@pytest.mark.no_cover  # generated inputs: see test_request_properties.py
@SETTINGS
def test_any_list_query_is_answered_2xx_or_4xx(gw, query, path):
    """limit=-1, after=garbage, order=nonsense: 200 or 400, never a 5xx."""
    answer = gw.get(path, params=query, headers=auth("alice"))
    assert answer.status_code in (200, 400, 401, 404), (path, query, answer.text)


def test_input_items_query_params(gw):
    """The stored input items of a response, paged with hostile parameters: 200 or 400."""
    made = gw.post("/v1/responses", headers=auth("alice"), json={
        "model": "chat", "input": [{"role": "user", "content": "a"},
                                   {"role": "user", "content": "b"}]}).json()
    for query in ({"limit": "-1"}, {"limit": "x"}, {"after": "garbage"}, {"order": "up"},
                  {"limit": "100", "order": "asc"}, {"after": ""}):
        answer = gw.get(f"/v1/responses/{made['id']}/input_items", params=query,
                        headers=auth("alice"))
        assert answer.status_code in (200, 400), (query, answer.text)


@pytest.mark.parametrize("path", ["/v1/batches", "/v1/fine_tuning/jobs"])
def test_json_bodies_over_max_body_are_413(gw, path):
    """The JSON bodies of /v1/batches and /v1/fine_tuning/jobs are bounded by server.max_body
    (64KB here), as every other API body: a larger one is a 413 before it is held whole."""
    body = b'{"metadata": {"a": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
    answer = gw.post(path, content=body, headers={**auth("alice"),
                                                  "content-type": "application/json"})
    assert answer.status_code == 413, answer.text[:300]
    assert answer.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("body", [b"", b"[]", b"null", b"{", b"\xff", b'{"input_file_id": 5}',
                                  b'{"endpoint": "/v1/chat/completions", "input_file_id": '
                                  b'"file-../../gateway.yaml"}',
                                  b'{"model": {"$ne": 1}}', b'{"a":' * 2000 + b"1" + b"}" * 2000])
@pytest.mark.parametrize("path", ["/v1/batches", "/v1/fine_tuning/jobs", "/v1/responses"])
def test_bad_json_bodies_are_4xx(gw, path, body):
    answer = gw.post(path, content=body, headers={**auth("alice"),
                                                  "content-type": "application/json"})
    assert 400 <= answer.status_code < 500, answer.text[:300]
    assert "error" in answer.json()


def test_files_are_never_written_outside_the_data_dir(gw, tmp_path):
    """After all of the above kinds of requests, the data directory holds the gateway's own
    names only (a filename is metadata, never a path)."""
    for name in ("../../outside.txt", "/tmp/abs.txt", "a\x00b", "..\\x"):
        made = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "user_data"},
                       files={"file": (name, b"data")})
        assert made.status_code == 200, made.text
        assert "/" not in made.json()["filename"]
    assert_contained(tmp_path)
    assert not os.path.exists(tmp_path / "outside.txt")


# -- /v1/responses input items ------------------------------------------------------------------

_ANY = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=6) | st.just([])
PART = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "output_text", "refusal", "input_image",
                              "input_file", "x"]) | _ANY},
    optional={"text": st.text(max_size=10) | _ANY, "refusal": _ANY,
              "image_url": st.sampled_from(["data:image/png;base64,iVBORw0KGgo=", "x",
                                            "https://127.0.0.1/a.png"]) | _ANY,
              "file_id": st.sampled_from(["file-../../x", "file-0"]) | _ANY,
              "file_data": st.sampled_from(["data:application/pdf;base64,JVBERi0=", "@@"]) | _ANY,
              "filename": st.sampled_from(["../a.pdf", "a\u0000b"]) | _ANY, "detail": _ANY})
ITEM = st.fixed_dictionaries(
    {}, optional={
        "type": st.sampled_from(["message", "function_call", "function_call_output",
                                 "reasoning", "item_reference", "web_search_call"]) | _ANY,
        "role": st.sampled_from(["user", "assistant", "system", "developer", "tool"]) | _ANY,
        "content": st.text(max_size=10) | st.lists(PART, max_size=3) | _ANY,
        "id": st.sampled_from(["msg_1", "", "x" * 300]) | _ANY,
        "call_id": st.sampled_from(["call_1"]) | _ANY, "name": st.just("f") | _ANY,
        "arguments": st.sampled_from(["{}", "not json"]) | _ANY,
        "output": st.text(max_size=10) | st.lists(PART, max_size=2) | _ANY,
        "summary": st.lists(st.fixed_dictionaries({"type": st.just("summary_text"),
                                                   "text": st.text(max_size=5)}),
                            max_size=2) | _ANY})
RESPONSES = st.fixed_dictionaries(
    {"model": st.just("chat"), "input": st.text(max_size=10) | st.lists(ITEM, max_size=4)
     | _ANY},
    optional={"previous_response_id": st.sampled_from(["resp_x", "", "../../x"]) | _ANY,
              "instructions": st.text(max_size=10) | _ANY, "store": st.booleans() | _ANY,
              "stream": st.booleans(), "max_output_tokens": st.integers(-1, 50) | _ANY,
              "tools": st.lists(st.fixed_dictionaries({"type": st.sampled_from(
                  ["function", "web_search", "x"]), "name": st.just("f")},
                  optional={"parameters": st.just({"type": "object"}) | _ANY}), max_size=2)
              | _ANY,
              "text": st.fixed_dictionaries({}, optional={"format": st.fixed_dictionaries(
                  {"type": st.sampled_from(["text", "json_object", "json_schema", "x"])})})
              | _ANY,
              "reasoning": st.fixed_dictionaries({}, optional={"effort": _ANY}) | _ANY})


@given(body=RESPONSES)
@pytest.mark.no_cover  # generated inputs: see test_request_properties.py
@SETTINGS
def test_any_responses_body_is_answered_2xx_or_4xx(gw, body):
    """Odd input items, parts, roles, ids and options on POST /v1/responses (and, when it was
    stored, its input items read back): 2xx or 4xx in OpenAI's shape, never a 5xx."""
    answer = gw.post("/v1/responses", headers=auth("alice"), json=body)
    assert answer.status_code < 500, (body, answer.text[:500])
    if answer.status_code == 200 and not body.get("stream"):
        made = answer.json()
        items = gw.get(f"/v1/responses/{made['id']}/input_items", headers=auth("alice"))
        assert items.status_code in (200, 404), items.text[:300]


def _wait_batch(gw, batch_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        batch = gw.get(f"/v1/batches/{batch_id}", headers=auth("alice")).json()
        if batch["status"] in ("completed", "failed", "expired", "cancelled") \
                or time.monotonic() > deadline:
            return batch
        time.sleep(0.05)


def test_custom_ids_of_any_text_are_run(gw):
    """custom_ids with non-Latin-1 letters, control characters, quotes or 300 characters (the
    gateway makes each line's x-request-id of it): every line is answered, the batch ends
    completed, each custom_id comes back as it was sent."""
    ids = ["r\u00e9-\u4e2d\u6587", "r\r\nx-evil: 1", "r\x00\x7f", 'r"\'<>', "r" * 300,
           "\U0001f600"]
    lines = [batch_line(i, custom_id=custom_id) for i, custom_id in enumerate(ids)]
    uploaded = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "batch"},
                       files={"file": ("b.jsonl", jsonl(lines))})
    assert uploaded.status_code == 200, uploaded.text
    made = gw.post("/v1/batches", headers=auth("alice"), json={
        "input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"}).json()
    ended = _wait_batch(gw, made["id"])
    assert ended["status"] == "completed", ended
    assert ended["request_counts"] == {"total": 6, "completed": 6, "failed": 0}, ended
    output = gw.get(f"/v1/files/{ended['output_file_id']}/content", headers=auth("alice"))
    assert sorted(json.loads(x)["custom_id"] for x in output.content.splitlines()) == sorted(ids)


def test_a_line_the_gateway_fails_on_fails_alone(gw, monkeypatch):
    """A line whose sending raises inside the gateway (a bug) is recorded as failed
    (gateway_error) and the batch ends; before, the batch task crashed, was started again at
    every tick, and resent the lines in flight each time."""
    from gateway.files.batches import BatchRunner

    real = BatchRunner._send

    async def send(self, dispatch, door, row, request):
        if request["custom_id"] == "boom":
            raise RuntimeError("a bug on this line")
        return await real(self, dispatch, door, row, request)

    monkeypatch.setattr(BatchRunner, "_send", send)
    lines = [batch_line(1), batch_line(2, custom_id="boom"), batch_line(3)]
    uploaded = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "batch"},
                       files={"file": ("b.jsonl", jsonl(lines))}).json()
    made = gw.post("/v1/batches", headers=auth("alice"), json={
        "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"}).json()
    ended = _wait_batch(gw, made["id"])
    assert ended["status"] == "completed", ended
    assert ended["request_counts"] == {"total": 3, "completed": 2, "failed": 1}, ended
    errors = gw.get(f"/v1/files/{ended['error_file_id']}/content", headers=auth("alice"))
    failed = json.loads(errors.content)
    assert failed["custom_id"] == "boom" and failed["error"]["code"] == "gateway_error"


def test_a_batch_file_holds_at_most_50000_requests(gateway_app, tmp_path):
    """Checking a batch file keeps its custom_ids in memory: past 50,000 requests (OpenAI's
    limit) the upload is a 400 that says so, read no further."""
    from gateway.files.jsonl import MAX_REQUESTS

    gw = gateway_app(CONFIG.replace("max_size: 200KB", "max_size: 40MB").format(
        data=tmp_path / "data", alice=_sha(KEYS["alice"]), bob=_sha(KEYS["bob"])))
    line = (b'{"custom_id": "%d", "method": "POST", "url": "/v1/embeddings", '
            b'"body": {"model": "chat", "input": "x"}}\n')
    body = b"".join(line % i for i in range(MAX_REQUESTS + 1))
    answer = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "batch"},
                     files={"file": ("b.jsonl", body)})
    assert answer.status_code == 400, answer.text[:300]
    message = answer.json()["error"]["message"]
    assert f"line {MAX_REQUESTS + 1}: a batch file holds at most {MAX_REQUESTS}" in message
    ok = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "batch"},
                 files={"file": ("b.jsonl", b"".join(line % i for i in range(MAX_REQUESTS)))})
    assert ok.status_code == 200, ok.text[:300]
    assert_contained(tmp_path)


def test_a_root_path_does_not_skip_identification(gw):
    """Served under a prefix (an ASGI server's root_path: uvicorn --root-path, a mount), the
    plugins' /v1/ routes still identify the caller first: without a key, 401, not the
    anonymous owner's files, batches, responses and fine-tuning jobs."""
    from starlette.testclient import TestClient

    client = TestClient(gw.app, base_url="http://127.0.0.1", root_path="/api")
    for path in ("/api/v1/files", "/api/v1/batches", "/api/v1/responses/resp_1",
                 "/api/v1/fine_tuning/jobs"):
        answer = client.get(path)
        assert answer.status_code == 401, (path, answer.text)
    made = client.post("/api/v1/fine_tuning/jobs", json={"model": "tune",
                                                         "training_file": "file-0"})
    assert made.status_code == 401, made.text
    listed = client.get("/api/v1/files", headers=auth("alice"))
    assert listed.status_code == 200, listed.text


SPENT = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  demo: {{type: mock}}
  tuner: {{type: openai, base_url: "http://127.0.0.1:9/v1", api_key: sk-never-reached-0000, fine_tuning: true}}
pricing:
  "demo/priced": {{input: 10, output: 10}}
routes:
  priced: {{target: {{provider: demo, model: priced}}}}
  tune: {{target: {{provider: tuner, model: gpt-4o-mini}}}}
keys:
  alice: {{key_sha256: {alice}, budget: {{usd: 0.02, period: monthly}}}}
"""


def test_a_spent_budget_starts_no_fine_tuning_job(gateway_app, tmp_path):
    """Fine-tuning is paid on the provider's account like any request: a key whose budget is
    spent gets 429 (budget_exceeded) before its file goes anywhere (the job's own cost is
    not known in advance, so only a spent budget is refused)."""
    gw = gateway_app(SPENT.format(data=tmp_path / "data", alice=_sha(KEYS["alice"])))
    tune = gw.post("/v1/files", headers=auth("alice"), data={"purpose": "fine-tune"},
                   files={"file": ("t.jsonl", jsonl([{"messages": [
                       {"role": "user", "content": "x"}]}]))}).json()
    for _ in range(40):  # answers that cost more than estimated, until the budget is spent
        spent = gw.post("/v1/chat/completions", headers=auth("alice"), json={
            "model": "priced", "max_tokens": 1,
            "messages": [{"role": "user", "content": "a " * 300}]})
        if spent.status_code == 429:
            break
    assert spent.status_code == 429 and "budget" in spent.text, spent.text
    job = gw.post("/v1/fine_tuning/jobs", headers=auth("alice"),
                  json={"model": "tune", "training_file": tune["id"]})
    assert job.status_code == 429, job.text
    assert "budget" in job.json()["error"]["message"], job.text
    assert "batch" not in job.json()["error"]["message"], job.text


NATIVE = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  oai: {{type: openai, base_url: "{url}", api_key: upstream-secret}}
routes:
  native: {{target: {{provider: oai, model: gpt-native}}}}
keys:
  alice: {{key_sha256: {alice}}}
  bob: {{key_sha256: {bob}}}
"""


def test_stored_responses_keep_the_gateways_own_ids(gateway_app, upstream, tmp_path):
    """An OpenAI target's answer (asked with store: false) is stored and answered under an id
    of the gateway's, new for every request: an upstream that repeats ids (this fake always
    says resp_fake_openai; a compatible server may) made bob's answer replace alice's stored
    one, and a continuation stored as its own previous response, so the next one sent the
    history over and over."""
    gw = gateway_app(NATIVE.format(data=tmp_path / "data", url=upstream.base_url,
                                   alice=_sha(KEYS["alice"]), bob=_sha(KEYS["bob"])))
    a = gw.post("/v1/responses", headers=auth("alice"), json={"model": "native", "input": "a"})
    b = gw.post("/v1/responses", headers=auth("bob"), json={"model": "native", "input": "b"})
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert a.json()["id"] != b.json()["id"] and "resp_fake_openai" not in (a.json()["id"],
                                                                           b.json()["id"])
    assert gw.get(f"/v1/responses/{a.json()['id']}", headers=auth("alice")).status_code == 200
    assert gw.get(f"/v1/responses/{b.json()['id']}", headers=auth("bob")).status_code == 200
    previous = a.json()["id"]
    for turn in range(3):
        made = gw.post("/v1/responses", headers=auth("alice"), json={
            "model": "native", "input": f"turn {turn}", "previous_response_id": previous})
        assert made.status_code == 200 and made.json()["id"] != previous, made.text
        assert made.json()["previous_response_id"] == previous
        previous = made.json()["id"]
    sent = upstream.requests[-1].body["input"]
    # a, its answer, turns 0 and 1 with their answers, turn 2: nothing repeated
    assert len(sent) == 7, sent
