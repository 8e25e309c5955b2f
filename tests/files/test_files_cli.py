"""`gateway files` and `gateway batches` against a gateway listening on loopback: upload a
JSONL file, start a batch, wait for it with the progress bar, read its results, cancel one,
list and delete files; errors are one clear line."""

from __future__ import annotations

import json

from ..cli_runner import run_cli
from .test_batches import CONFIG
from .test_files_api import batch_line, jsonl


def test_files_and_batches_commands(gateway_app, tmp_path):
    gw = gateway_app(CONFIG.format(data=tmp_path / "data", concurrency=4, latency="0s"))
    url = gw.listen()
    source = tmp_path / "requests.jsonl"
    source.write_bytes(jsonl(batch_line(i) for i in range(20)))
    made = run_cli("files", "upload", source, "--url", url)
    assert made.code == 0, made.text
    file_id = made.json["id"]
    listed = run_cli("files", "list", "--purpose", "batch", "--url", url)
    assert file_id in listed.out and "requests.jsonl" in listed.out
    created = run_cli("batches", "create", source, "--url", url)  # uploads it again first
    assert created.code == 0, created.text
    batch_id = created.json["id"]
    waited = run_cli("batches", "status", batch_id, "--wait", "--interval", "0.05", "--url", url)
    assert waited.code == 0 and waited.json["status"] == "completed"
    assert "20/20 (0 failed) completed" in waited.err
    results = run_cli("batches", "results", batch_id, "--url", url)
    assert sorted(json.loads(line)["custom_id"] for line in results.out.splitlines()) == \
        sorted(f"req-{i}" for i in range(20))
    no_errors = run_cli("batches", "results", batch_id, "--errors", "--url", url)
    assert no_errors.code == 1 and "has no error file" in no_errors.err
    cancel = run_cli("batches", "cancel", batch_id, "--url", url)
    assert cancel.code == 1 and "409" in cancel.err
    assert run_cli("files", "delete", file_id, "--url", url).code == 0
    gone = run_cli("files", "delete", file_id, "--url", url)
    assert gone.code == 1 and "404" in gone.err and "No such File" in gone.err
    down = run_cli("files", "list", "--url", "http://127.0.0.1:9")
    assert down.code == 1 and "no gateway answered" in down.err
