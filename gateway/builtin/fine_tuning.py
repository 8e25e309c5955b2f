"""Built-in plugin: /v1/fine_tuning/jobs passed through to providers that fine-tune, with the
training files taken from /v1/files (gateway/files/fine_tuning.py), and the background task
that deletes a job's files at the provider once it has ended. docs/files.md."""

from __future__ import annotations

import os
from typing import Any

from .. import hookimpl
from ..files.fine_tuning import FineTuningEndpoints, FineTuningFiles, FineTuningSettings, JobStore
from ..hookspecs import PluginContext
from ..middleware.limits import Limits
from .files import file_store, settings


def job_store(context: PluginContext) -> JobStore:
    """The JobStore of the config's data_dir, one per process, set to the config's
    `fine_tuning:` settings."""
    path = os.path.abspath(context.data_dir)
    jobs = context.state.acquire(("fine_tuning", path), lambda: JobStore(path))
    jobs.settings = FineTuningSettings.of(settings(context, "fine_tuning"))
    return jobs


@hookimpl
def api_routes(config: dict, context: PluginContext) -> list[Any]:
    limits = Limits(context)
    return FineTuningEndpoints(file_store(context), job_store(context), context.routes,
                               limits, limits).routes_()


@hookimpl
def background_task(config: dict, context: PluginContext) -> FineTuningFiles:
    jobs = job_store(context)
    path = os.path.abspath(context.data_dir)
    task = context.state.acquire(("fine_tuning:files", path), lambda: FineTuningFiles(jobs))
    task.routes = context.routes
    return task
