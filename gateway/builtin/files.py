"""Built-in plugin: /v1/files and the gateway's own /v1/batches (gateway/files/): uploads kept
encrypted in the data directory, owned by the key that sent them, and the background task
that runs batches through the routes. docs/files.md."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .. import hookimpl
from ..files.api import FilesEndpoints
from ..files.batches import BatchEndpoints, BatchRunner, BatchSettings
from ..files.store import FileStore
from ..hookspecs import PluginContext
from ..middleware.limits import Limits
from ..units import size_bytes
from . import files_cli

DEFAULT_MAX_SIZE = "512MB"
DEFAULT_MAX_BYTES_PER_KEY = "10GB"  # files.max_bytes_per_key: a key's files together


def file_store(context: PluginContext) -> FileStore:
    """The FileStore of the config's data_dir, one per process (kept across reloads; closed
    at shutdown). Other features reach the files through it (docs/files.md)."""
    path = os.path.abspath(context.data_dir)
    return context.state.acquire(("files", path), lambda: FileStore(path))


def batch_runner(context: PluginContext) -> BatchRunner:
    """The batch runner of the config's data_dir, one per process, set to the config's
    `batches:` settings."""
    path, store = os.path.abspath(context.data_dir), file_store(context)
    runner = context.state.acquire(("batches", path), lambda: BatchRunner(store))
    runner.configure(BatchSettings.of(settings(context, "batches")))
    runner.routes = context.routes
    # Provider-native batches are counted by the built-in limits: the same prices, usage
    # rows, budgets and USD limits as requests (docs/files.md#usage-limits-and-budgets).
    runner.accounting = Limits(context)
    return runner


def settings(context: PluginContext, section: str) -> dict[str, Any]:
    value = context.gateway_config.get(section)
    return dict(value) if isinstance(value, dict) else {}


@hookimpl
def api_routes(config: dict, context: PluginContext) -> list[Any]:
    section = settings(context, "files")
    max_size = size_bytes(section.get("max_size", DEFAULT_MAX_SIZE))
    quota = size_bytes(section.get("max_bytes_per_key", DEFAULT_MAX_BYTES_PER_KEY))
    store, limits = file_store(context), Limits(context)  # calls count as requests
    return [*FilesEndpoints(store, max_size, limits, quota).routes(),
            *BatchEndpoints(store, batch_runner(context), limits).routes()]


@hookimpl
def background_task(config: dict, context: PluginContext) -> BatchRunner:
    return batch_runner(context)


@hookimpl
def register_commands(subparsers: argparse._SubParsersAction) -> None:
    files_cli.register(subparsers)
