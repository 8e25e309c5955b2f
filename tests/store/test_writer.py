"""Writer: one thread owns a database's write connection; jobs run in order, each in its own
transaction, and their results or errors reach the caller."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from gateway.store import keys_db
from gateway.store.sqlite import connect
from gateway.store.writer import Writer


def opener(path):
    def open_():
        conn = connect(path, isolation_level=None)
        conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
        return conn
    return open_


def rows(path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT n FROM t ORDER BY rowid")]


async def test_jobs_run_in_order_on_one_thread_and_results_come_back(tmp_path):
    path = str(tmp_path / "w.db")
    writer = Writer(opener(path))
    threads = set()

    def insert(n):
        def job(db):
            threads.add(threading.get_ident())
            db.execute("INSERT INTO t VALUES (?)", (n,))
            return n
        return job

    try:
        futures = [writer.submit(insert(n)) for n in range(20)]
        assert await writer.run(insert(20)) == 20
        assert [f.result() for f in futures] == list(range(20))
    finally:
        writer.close()
    assert rows(path) == list(range(21))
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_a_failing_job_is_rolled_back_and_raises_in_the_caller(tmp_path):
    path = str(tmp_path / "w.db")
    writer = Writer(opener(path))

    def half_then_fail(db):
        db.execute("INSERT INTO t VALUES (1)")
        raise ValueError("bad row")

    try:
        with pytest.raises(ValueError, match="bad row"):
            writer.call(half_then_fail)
        writer.call(lambda db: db.execute("INSERT INTO t VALUES (2)"))
    finally:
        writer.close()
    assert rows(path) == [2]


def test_a_failure_to_open_reaches_the_caller_and_the_next_job_opens_again(tmp_path):
    path = str(tmp_path / "w.db")
    attempts = []

    def flaky_open():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError(24, "Too many open files")
        return opener(path)()

    writer = Writer(flaky_open)
    try:
        with pytest.raises(OSError, match="Too many open files"):
            writer.call(lambda db: None)
        writer.call(lambda db: db.execute("INSERT INTO t VALUES (3)"))
    finally:
        writer.close()
    assert rows(path) == [3] and len(attempts) == 2


def test_workers_opening_a_new_file_together_migrate_it_once(tmp_path):
    """Eight connections open keys.db at the same moment: each migration is applied (and
    recorded) exactly once, and no open fails."""
    path = str(tmp_path / "keys.db")
    barrier, errors = threading.Barrier(8), []

    def open_():
        barrier.wait(5)
        try:
            keys_db.connect(path).close()
        except Exception as exc:  # noqa: BLE001 (collected and asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=open_) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM _sqlite_migrations ORDER BY id").fetchall() == [
            ("m001_keys",), ("m002_keys_from_gateway_db",)]


def test_none_is_bound_as_null(tmp_path):
    """gateway.store.sqlite registers an adapter for None (binding it costs a dict lookup
    instead of two failed attribute lookups): it still goes in as NULL, through the Writer
    as through any connection, and None still comes back."""
    import sqlite3

    from gateway.store import sqlite as store_sqlite

    conn = store_sqlite.connect(str(tmp_path / "t.db"), isolation_level=None)
    conn.execute("CREATE TABLE t (a, b TEXT, c INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(None, None, 1), (None, "x", None)])
    assert conn.execute("SELECT typeof(a), typeof(b), typeof(c) FROM t").fetchall() == [
        ("null", "null", "integer"), ("null", "text", "null")]
    assert conn.execute("SELECT count(*) FROM t WHERE a IS NULL").fetchone() == (2,)
    assert conn.execute("SELECT a, b FROM t WHERE c = 1").fetchone() == (None, None)
    conn.close()
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
