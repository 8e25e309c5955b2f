"""Writer: the one connection that writes to a database file, owned by one thread.

Callers enqueue a job — a function of the connection — and may wait for its result
(``call``) or await it (``run``) without blocking the event loop. Jobs run one at a time in
the order they were submitted, each in its own ``BEGIN IMMEDIATE`` transaction (committed
when the job returns, rolled back when it raises). The connection is opened by the thread on
the first job (so a failure to open reaches that job's caller) and again after an error that
may have broken it.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]
_Item = tuple["Future[Any]", Job[Any]]


class Writer:
    def __init__(self, opener: Callable[[], sqlite3.Connection], name: str = "writer"):
        """``opener`` returns a new connection in autocommit mode (``isolation_level=None``),
        ready to write: migrated, WAL (see ``store.sqlite.connect``)."""
        self.opener = opener
        self.name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None  # serving self._queue
        self._lock = threading.Lock()

    def submit(self, job: Job[T]) -> Future[T]:
        """Queue ``job``; its result (or exception) arrives in the returned future."""
        future: Future[T] = Future()
        with self._lock:
            if self._thread is None:
                self._queue = queue.SimpleQueue()  # the previous thread may still drain its own
                self._thread = threading.Thread(target=self._serve, args=(self._queue,),
                                                name=self.name, daemon=True)
                self._thread.start()
            self._queue.put((future, job))
        return future

    def call(self, job: Job[T]) -> T:
        """Run ``job`` and wait for its result (CLI, admin API: rare, small writes)."""
        return self.submit(job).result()

    async def run(self, job: Job[T]) -> T:
        """Run ``job`` and await its result without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(job))

    def close(self) -> None:
        """Finish the queued jobs, close the connection and end the thread. A later
        ``submit`` starts a new one."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def _serve(self, jobs: queue.SimpleQueue[_Item | None]) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while (item := jobs.get()) is not None:
                future, job = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    if conn is None:
                        conn = self.opener()
                    result = _in_transaction(conn, job)
                except BaseException as exc:  # the caller gets it, whatever it is
                    future.set_exception(exc)
                    if conn is not None and _may_be_broken(exc):
                        conn.close()  # open afresh for the next job
                        conn = None
                else:
                    future.set_result(result)
        finally:
            if conn is not None:
                conn.close()


def _in_transaction(conn: sqlite3.Connection, job: Job[T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = job(conn)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _may_be_broken(exc: BaseException) -> bool:
    """An error of the disk or the database (not of the job's data: a constraint)."""
    return (isinstance(exc, (OSError, sqlite3.DatabaseError))
            and not isinstance(exc, sqlite3.IntegrityError))
