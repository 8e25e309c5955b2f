"""Built-in plugin: /v1/fine_tuning/jobs passed through to providers that fine-tune, with the
training files taken from /v1/files (gateway/files/fine_tuning.py). docs/files.md."""

from __future__ import annotations

import os
from typing import Any

from .. import hookimpl
from ..files.fine_tuning import FineTuningEndpoints, JobStore
from ..hookspecs import PluginContext
from ..middleware.limits import Limits
from .files import file_store


@hookimpl
def api_routes(config: dict, context: PluginContext) -> list[Any]:
    path = os.path.abspath(context.data_dir)
    jobs = context.state.acquire(("fine_tuning", path), lambda: JobStore(path))
    return FineTuningEndpoints(file_store(context), jobs, context.routes,
                               Limits(context)).routes_()
