"""Built-in plugin: /v1/files (gateway/files/): uploads kept encrypted in the data directory,
owned by the key that sent them. docs/files.md."""

from __future__ import annotations

import os
from typing import Any

from .. import hookimpl
from ..files.api import FilesEndpoints
from ..files.store import FileStore
from ..hookspecs import PluginContext
from ..units import size_bytes

DEFAULT_MAX_SIZE = "512MB"


def file_store(context: PluginContext) -> FileStore:
    """The FileStore of the config's data_dir, one per process (kept across reloads; closed
    at shutdown). Other features reach the files through it (docs/files.md)."""
    path = os.path.abspath(context.data_dir)
    return context.state.acquire(("files", path), lambda: FileStore(path))


def settings(context: PluginContext, section: str) -> dict[str, Any]:
    value = context.gateway_config.get(section)
    return dict(value) if isinstance(value, dict) else {}


@hookimpl
def api_routes(config: dict, context: PluginContext) -> list[Any]:
    max_size = size_bytes(settings(context, "files").get("max_size", DEFAULT_MAX_SIZE))
    return FilesEndpoints(file_store(context), max_size).routes()
