"""The end of a provider-native batch is counted exactly once: a real `gateway serve` killed
after the batch's row says it ended but before its usage was charged counts it when started
again; a count done again (the write marking it counted failed) charges, logs and measures
nothing twice. Usage read from /admin/usage, the budget from the next batch's admission, the
request log from logs.db, /metrics from the process."""

from __future__ import annotations

import signal
import sqlite3

import openai
import pytest

from gateway.store import files_db, usage_db

from ..fake_batches import FakeBatchAPI
from ..inprocess_gateway import poll
from .test_native_batch_accounting import (
    CAPPED, CONFIG, KEY, PENNIES, RICH, TIGHT, digest, lines, run_batch, start,
)


@pytest.fixture
def fake():
    with FakeBatchAPI() as api:
        yield api


def read(path, sql: str, *args):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # not created or migrated yet
        return []
    finally:
        conn.close()


def accounted(data, batch_id: str):
    found = read(data / "files.db", "SELECT status, accounted FROM batches WHERE id = ?",
                 batch_id)
    return found[0] if found else None


def logged_lines(data, batch_id: str) -> int:
    found = read(data / "logs.db", "SELECT COUNT(*) FROM requests WHERE native_batch = ?",
                 batch_id)
    return found[0][0] if found else 0


def test_killed_before_its_usage_is_counted(gateway_factory, fake, tmp_path):
    """The first process marks the batch completed (accounted 0) and hands its lines to the
    request log, then waits to charge (usage.db locked by the test) and is killed. The
    second one counts it: usage once (2 lines answered), the request log's 3 lines once."""
    data = tmp_path / "data"
    config = CONFIG.format(data=data, base_url=fake.base_url, key=KEY, extra="",
                           rich=digest(RICH), tight=digest(TIGHT), capped=digest(CAPPED),
                           pennies=digest(PENNIES))
    first = gateway_factory(config)
    client = first.openai(RICH)
    data.mkdir(exist_ok=True)
    usage_db.connect(str(data / "usage.db")).close()
    lock = sqlite3.connect(data / "usage.db", timeout=5)
    lock.execute("BEGIN IMMEDIATE")  # the charge waits here
    try:
        uploaded = client.files.create(file=("in.jsonl", lines("one", "fail-two", "three")),
                                       purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id,
                                      endpoint="/v1/chat/completions", completion_window="24h")
        (remote,) = fake.batches
        fake.finish(remote)
        poll(lambda: accounted(data, batch.id), lambda a: a == ("completed", 0), 10,
             "the batch was not marked ended", every=0.05)
        poll(lambda: logged_lines(data, batch.id), lambda n: n == 3, 10,
             "the lines were not logged before the charge", every=0.05)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(5)
    finally:
        lock.rollback()
        lock.close()
    assert read(data / "usage.db", "SELECT COUNT(*) FROM usage") == [(0,)]

    second = gateway_factory(config)
    poll(lambda: accounted(data, batch.id), lambda a: a == ("completed", 1), 15,
         "the restarted gateway did not count the batch", every=0.05)
    usage = second.request("GET", "/admin/usage?period=all").json()["usage"]
    assert [(u["key"], u["requests"], u["prompt_tokens"]) for u in usage] == [("rich", 2, 200)]
    assert logged_lines(data, batch.id) == 3
    assert read(data / "usage.db", "SELECT batch_id FROM batch_charges") == [(batch.id,)]


def test_a_count_done_again_counts_nothing_twice(gateway_app, tmp_path, fake, monkeypatch):
    """The write that marks the batch counted fails once (after the charge): the runner
    counts it again and nothing is counted twice: usage rows, the budget (a batch that fits
    only when the first was charged once is admitted), the request log, /metrics."""
    real = files_db.mark_accounted
    failures = []

    def mark_once(conn, batch_id):
        if not failures:
            failures.append(batch_id)
            raise sqlite3.OperationalError("disk I/O error (injected)")
        real(conn, batch_id)

    monkeypatch.setattr(files_db, "mark_accounted", mark_once)
    gw = start(gateway_app, tmp_path, fake)
    client = gw.openai(TIGHT)
    route = 'route="gpt"'

    def requests_metric() -> float:
        return sum(float(m.rsplit(" ", 1)[1]) for m in gw.get("/metrics").text.splitlines()
                   if m.startswith("gateway_requests_total{") and route in m)

    before = requests_metric()
    done, _ = run_batch(client, fake, "a", "fail-b", "c")  # $0.2 of the key's $0.22
    data = tmp_path / "data"
    poll(lambda: accounted(data, done.id), lambda a: a == ("completed", 1), 10,
         "the batch was not counted after the failed mark", every=0.05)
    assert failures == [done.id]
    usage = gw.get("/admin/usage?period=all").json()["usage"]
    assert [(u["key"], u["requests"]) for u in usage] == [("tight", 2)]
    poll(lambda: logged_lines(data, done.id), lambda n: n == 3, 10, "lines not logged")
    assert requests_metric() - before == 3
    # Charged once ($0.2): a one-line batch (estimated ~$0.0125) still fits the $0.22.
    uploaded = client.files.create(file=("in.jsonl", lines("d")), purpose="batch")
    client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                          completion_window="24h")
    # ... and charged twice it would not have:
    assert len(fake.batches) == 2
    with pytest.raises(openai.RateLimitError):
        again = client.files.create(file=("in.jsonl", lines(*"efgh")), purpose="batch")
        client.batches.create(input_file_id=again.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
