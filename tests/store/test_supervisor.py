"""Supervisor: a background task that crashes is logged and restarted with backoff."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from gateway.store.tasks import Supervisor


async def test_a_crashed_task_is_logged_and_restarted_with_backoff():
    """Two crashes, then a clean run: restarted after 0.1 s, then 0.2 s, and done."""
    runs, delays = [], []

    async def body():
        runs.append(len(runs))
        if len(runs) <= 2:
            raise OSError(24, "Too many open files")

    async def sleep(seconds):
        delays.append(seconds)

    supervisor = Supervisor("flush:test", body, first_delay=0.1, sleep=sleep)
    with capture_logs() as logs:
        supervisor.start()
        await asyncio.wait_for(supervisor.task, 5)
    assert runs == [0, 1, 2]
    assert delays == [0.1, 0.2]
    assert supervisor.restarts == 2
    crashed = [e for e in logs if e["event"] == "task_crashed"]
    assert [e["task"] for e in crashed] == ["flush:test", "flush:test"]
    assert "Too many open files" in crashed[0]["error"]


async def test_the_backoff_starts_over_after_a_long_healthy_run():
    """A task that ran longer than the longest delay before it crashed restarts quickly."""
    now = [0.0]
    delays = []
    runs = []

    async def body():
        runs.append(1)
        now[0] += 100.0 if len(runs) == 3 else 0.0  # the third run is long and healthy
        if len(runs) < 4:
            raise RuntimeError("boom")

    async def sleep(seconds):
        delays.append(seconds)

    supervisor = Supervisor("t", body, first_delay=1, max_delay=30, sleep=sleep,
                            clock=lambda: now[0])
    with capture_logs():
        supervisor.start()
        await asyncio.wait_for(supervisor.task, 5)
    assert delays == [1, 2, 1]


async def test_stop_cancels_the_task_and_start_is_idempotent():
    started = asyncio.Event()

    async def body():
        started.set()
        await asyncio.Event().wait()

    supervisor = Supervisor("t", body)
    supervisor.start()
    task = supervisor.task
    supervisor.start()
    assert supervisor.task is task  # kept referenced: one task, not two
    await asyncio.wait_for(started.wait(), 5)
    await supervisor.stop()
    assert task.cancelled() and not supervisor.running


async def test_a_spawned_task_is_kept_referenced_and_its_error_logged():
    """A one-shot background task (settling a stream's usage) cannot vanish before it ends,
    and an error it ends with is logged instead of lost."""
    import gc

    from gateway.store.tasks import _running, spawn

    release = asyncio.Event()

    async def settle():
        await release.wait()
        raise ValueError("counter backend gone")

    with capture_logs() as logs:
        task = spawn(settle(), "limits:settle")
        mine = {id(task)}
        del task
        gc.collect()
        assert mine <= {id(t) for t in _running}
        release.set()
        for _ in range(100):  # bounded: the task ends within a few loop turns
            if not mine & {id(t) for t in _running}:
                break
            await asyncio.sleep(0)
    assert not mine & {id(t) for t in _running}
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert failed and failed[0]["task"] == "limits:settle"
    assert "counter backend gone" in failed[0]["error"]
