"""What the reloader needs for versions: build a graph numbered by the version store, record it,
and know which files (the config and its includes) a running config was read from.

Version numbers come from the store (``<data_dir>/gateway.db``), so they survive restarts and
every worker process agrees on them. When the store cannot be used (an unwritable data_dir),
the gateway keeps serving and numbers versions in memory; the problem is logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from typing import Callable

from ..config.compiler import Runtime, compile_loaded
from ..config.loader import LoadedConfig, load_bytes, load_file
from ..config.versions import StoreError, VersionStore, data_dir_for
from ..graph.graph import RoutingGraph
from ..logs import get_logger

log = get_logger("gateway.versions")

# A last check of a compiled graph before it is recorded and served; raises ConfigErrors.
Accept = Callable[[RoutingGraph, LoadedConfig], None]


@dataclass(frozen=True)
class Inputs:
    """The files a config was read from, each with its sha256; the main file first."""

    files: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, loaded: LoadedConfig) -> "Inputs":
        main = (os.path.abspath(loaded.path), _sha(loaded.text.encode("utf-8")))
        return cls((main, *((os.path.abspath(f.path), f.sha256) for f in loaded.includes)))

    def paths(self) -> frozenset[str]:
        return frozenset(path for path, _ in self.files)

    def unchanged(self, main_raw: bytes) -> bool:
        """True when the main file (given) and every included file still hold what they held.
        Reads the included files: call it in a worker thread."""
        if _sha(main_raw) != self.files[0][1]:
            return False
        for path, sha in self.files[1:]:
            try:
                with open(path, "rb") as fh:
                    if _sha(fh.read()) != sha:
                        return False
            except OSError:
                return False
        return True


def startup_graph(path: str, runtime: Runtime,
                  environment: str | None = None) -> tuple[RoutingGraph, LoadedConfig]:
    """Load and compile the config a gateway starts with, numbered as the store would number
    it. Not recorded yet: ``record_startup`` does that once the server can listen, so a start
    that fails (port in use, refused bind) leaves no version behind."""
    loaded = load_file(path, environment=environment)
    return _compile(loaded, runtime, 1), loaded


def record_startup(graph: RoutingGraph, loaded: LoadedConfig) -> RoutingGraph:
    """Record the startup config (source ``startup``); the graph renumbered if need be."""
    return _record(graph, loaded, "startup")


def build_graph(raw: bytes, path: str, runtime: Runtime, environment: str | None,
                provisional: int, source: str,
                accept: Accept | None = None) -> tuple[RoutingGraph, LoadedConfig]:
    """Load and compile new file contents; record the version. Runs in a worker thread.
    ``accept`` may refuse the compiled graph (raising ConfigErrors) before it is recorded."""
    loaded = load_bytes(raw, path, environment=environment)
    return _record(_compile(loaded, runtime, provisional, accept), loaded, source), loaded


def _compile(loaded: LoadedConfig, runtime: Runtime, provisional: int,
             accept: Accept | None = None) -> RoutingGraph:
    store = VersionStore(data_dir_for(loaded.path, loaded.data))
    try:
        number = store.next_number(loaded)
    except StoreError as exc:
        log.warning("version_store_unavailable", error=str(exc))
        number = provisional
    graph = compile_loaded(loaded, version=number, runtime=runtime)
    if accept is not None:
        accept(graph, loaded)
    return graph


def _record(graph: RoutingGraph, loaded: LoadedConfig, source: str) -> RoutingGraph:
    store = VersionStore(graph.settings.data_dir)
    try:
        recorded, new = store.record(loaded, source)
    except StoreError as exc:
        log.warning("version_store_unavailable", error=str(exc), version=graph.version)
        return graph
    if new:
        log.info("config_version_recorded", version=recorded, source=source,
                 sha256=loaded.sha256[:12])
    if recorded != graph.version:  # another process recorded a version meanwhile
        graph = dataclasses.replace(graph, version=recorded)
    return graph


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
