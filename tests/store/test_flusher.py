"""The usage flusher survives a failed write: nothing recorded is lost, and it keeps
flushing (it used to die for good on an OSError, so usage stopped being written)."""

from __future__ import annotations

import asyncio
import threading

from structlog.testing import capture_logs

from gateway.store import usage_db
from gateway.middleware.usage import UsageRecorder, query_usage

from .ticks import Ticks


async def test_usage_flush_survives_an_oserror_and_the_next_flush_lands(tmp_path, monkeypatch):
    path = str(tmp_path / "data" / "usage.db")
    real_add = usage_db.add
    loop = asyncio.get_running_loop()
    attempts: asyncio.Queue[str] = asyncio.Queue()
    failed = []

    def flaky_add(*args, **kwargs):  # runs in the writer's thread
        if not failed:
            failed.append(True)
            loop.call_soon_threadsafe(attempts.put_nowait, "failed")
            raise OSError(24, "Too many open files")
        real_add(*args, **kwargs)
        loop.call_soon_threadsafe(attempts.put_nowait, "written")

    monkeypatch.setattr(usage_db, "add", flaky_add)
    recorder = UsageRecorder(path)
    recorder.tick = ticks = Ticks()
    try:
        with capture_logs() as logs:
            recorder.record(0.0, "team", "chat", "demo/m", 3, 0, 0.5)
            ticks.step()
            assert await asyncio.wait_for(attempts.get(), 5) == "failed"
            recorder.record(1.0, "team", "chat", "demo/m", 4, 0, 0.25)
            ticks.step()
            assert await asyncio.wait_for(attempts.get(), 5) == "written"
            await recorder.aclose()  # waits for the writer to commit; nothing is left to flush
        assert query_usage(path) == [{
            "key": "team", "route": "chat", "target": "demo/m", "requests": 2,
            "prompt_tokens": 7, "completion_tokens": 0, "cost_usd": 0.75,
            "estimated_requests": 0}]
        assert [e["event"] for e in logs if e["log_level"] == "error"] == ["usage_flush_failed"]
    finally:
        await recorder.aclose()


async def test_a_flush_cancelled_at_shutdown_still_lands(tmp_path):
    """Closing the recorder while its flush waits in the writer's queue loses nothing."""
    path = str(tmp_path / "usage.db")
    recorder = UsageRecorder(path)
    recorder.tick = ticks = Ticks()
    busy, release = threading.Event(), threading.Event()

    def hold(db):  # another write holds the writer's thread
        busy.set()
        release.wait(5)

    held = recorder.writer.submit(hold)
    assert busy.wait(5)
    recorder.record(0.0, "team", "chat", "demo/m", 3, 0, 0.5)
    ticks.step()
    for _ in range(100):  # bounded: until the flush has taken the rows and queued its write
        if not recorder.pending:
            break
        await asyncio.sleep(0)
    closing = asyncio.ensure_future(recorder.aclose())  # cancels the waiting flush
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(closing, 5)
    held.result(5)
    assert [r["requests"] for r in query_usage(path)] == [1]
