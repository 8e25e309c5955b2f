"""The request log under a real `gateway serve --workers 2`: both workers append to one
logs.db (WAL, busy timeout), and a kill -9 of every process loses no row that was written."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import loopback
from ..inprocess_gateway import poll

CONFIG = """
version: 1
providers:
  demo: {type: mock}
routes:
  live: {target: {provider: demo, model: m}}
"""
REQUESTS = 40  # at least


def processes(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            found += processes(int(child))
    return found


def written(gw) -> dict[str, float]:
    """gateway_request_log_written_total per worker, from one scrape (it answers for all)."""
    text = loopback.get(gw.base_url + "/metrics", timeout=5).text
    return {w: float(v) for w, v in re.findall(
        r'^gateway_request_log_written_total\{worker="(\d+)"\} (\S+)$', text, re.M)}


def test_two_workers_share_the_file_and_kill_9_loses_no_written_row(gateway_factory,
                                                                    tmp_path: Path):
    """Requests answered by both workers are all in logs.db once written; after SIGKILL of
    the server and its workers the file is intact and still holds every one of them."""
    gw = gateway_factory(CONFIG, args=("--workers", "2"))

    def ask(_: int) -> str:
        reply = loopback.post(gw.base_url + "/v1/chat/completions", timeout=10, json={
            "model": "live", "messages": [{"role": "user", "content": "x"}]})
        assert reply.status_code == 200
        return reply.headers["x-request-id"]

    # Eight at a time, each on its own connection, until both workers have written rows:
    # the second worker may start accepting later than the first.
    ids: list[str] = []
    deadline = time.monotonic() + 20
    with ThreadPoolExecutor(8) as pool:
        while len(ids) < REQUESTS or not all(written(gw).get(w) for w in ("0", "1")):
            assert time.monotonic() < deadline, written(gw)
            ids += pool.map(ask, range(8))
    db = tmp_path / ".gateway" / "logs.db"

    def stored() -> set[str]:
        if not db.exists():
            return set()
        conn = sqlite3.connect(db)
        try:
            return {r for (r,) in conn.execute("SELECT request_id FROM requests")}
        finally:
            conn.close()

    poll(stored, lambda found: found >= set(ids), 10, "rows of every answered request")
    # Which worker wrote how many: the scrape reaches both sooner or later (new connections).
    per_worker: dict[str, float] = {}
    deadline = time.monotonic() + 10
    while sum(per_worker.values()) != len(ids) and time.monotonic() < deadline:
        per_worker.update(written(gw))
    assert sorted(per_worker) == ["0", "1"] and all(per_worker.values()), per_worker
    assert sum(per_worker.values()) == len(ids)

    for pid in processes(gw.proc.pid):
        os.kill(pid, signal.SIGKILL)
    gw.proc.wait(5)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        found = [r for (r,) in conn.execute("SELECT request_id FROM requests")]
    finally:
        conn.close()
    assert sorted(found) == sorted(ids)
