"""The plugins' background tasks (hookspecs.background_task): each task object of the running
config runs under a Supervisor (restarted with backoff when it raises) with the server's
dispatcher; a reload starts the new objects and stops those it no longer has."""

from __future__ import annotations

import functools

from ..graph.graph import RoutingGraph
from ..hookspecs import BackgroundTask, Dispatch
from ..store.tasks import Supervisor, spawn


class BackgroundTasks:
    def __init__(self, dispatch: Dispatch):
        self.dispatch = dispatch
        self.running: dict[int, tuple[BackgroundTask, Supervisor]] = {}

    def reconcile(self, graph: RoutingGraph) -> None:
        """Run ``graph``'s tasks (those running already go on), stop the others."""
        wanted = {id(task): task for task in graph.background_tasks}
        for ident in list(self.running):
            if ident not in wanted:
                _, supervisor = self.running.pop(ident)
                spawn(supervisor.stop(), f"background:stop:{supervisor.name}")
        for ident, task in wanted.items():
            if ident not in self.running:
                supervisor = Supervisor(f"background:{task.name}",
                                        functools.partial(task.run, self.dispatch))
                supervisor.start()
                self.running[ident] = (task, supervisor)

    async def stop(self) -> None:
        running, self.running = self.running, {}
        for _, supervisor in running.values():
            await supervisor.stop()
