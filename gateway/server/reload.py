"""Hot reload: read -> hash -> compile (in a worker thread) -> swap one reference, or reject.

The live graph is never touched while a new one is built. A config that fails to load,
validate or compile is rejected whole: the old graph keeps serving and the rejection is logged
(one `FILE:LINE:COL: message` per error) and kept for `GET /admin/config`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Literal

from watchfiles import awatch

from ..config.compiler import Runtime
from ..errors import ConfigError, ConfigErrors
from ..events import CONFIG_REJECTED, emit
from ..graph.graph import RoutingGraph
from ..logs import get_logger
from ..store.tasks import spawn
from ..units import iso_utc as _iso
from . import audit
from .bind import bind_errors
from .versioning import Inputs, build_graph
from .watch_paths import signature, watched_directories, watched_paths

log = get_logger("gateway.reload")

Outcome = Literal["applied", "unchanged", "rejected"]
MAX_ALERT_ERRORS = 10  # a config_rejected alert lists at most this many errors


class GraphHolder:
    """Holds the one current graph. A request reads ``current`` once and keeps that snapshot."""

    __slots__ = ("current",)

    def __init__(self, graph: RoutingGraph):
        self.current = graph


@dataclass(frozen=True)
class Rejection:
    at: float
    source: str
    sha256: str | None
    errors: tuple[ConfigError, ...]

    def as_dict(self) -> dict:
        return {
            "rejected_at": _iso(self.at),
            "source": self.source,
            "sha256": self.sha256,
            "errors": [e.as_dict() | {"text": str(e)} for e in self.errors],
        }


@dataclass(frozen=True)
class ReloadResult:
    outcome: Outcome
    version: int | None
    errors: tuple[ConfigError, ...] = ()


class Reloader:
    def __init__(self, path: str, runtime: Runtime, holder: GraphHolder, *,
                 environment: str | None = None, inputs: Inputs | None = None,
                 bind_host: str | None = None):
        self.path = path
        self.bind_host = bind_host  # where the server listens: every reload gets the bind check
        self.runtime = runtime
        self.holder = holder
        self.environment = environment  # the environments: overlay (None: $GATEWAY_ENV)
        self.inputs = inputs  # the files the running config was read from (with includes)
        self.last_rejection: Rejection | None = None
        self.counts = {"applied": 0, "unchanged": 0, "rejected": 0}
        self.listeners: list = []  # called with each newly applied graph
        self._lock = asyncio.Lock()
        self._version = holder.current.version if holder.current else 0

    def adopt(self, graph: RoutingGraph) -> None:
        """Install the first graph (compiled before serving started)."""
        self.holder.current = graph
        self._version = graph.version

    async def reload(self, source: str = "file", *, force: bool = False,
                     actor: str | None = None) -> ReloadResult:
        """``actor``: who asked (the audit trail's ``admin:<token id>``); None for the watcher."""
        async with self._lock:
            try:
                raw = await asyncio.to_thread(_read, self.path)
            except OSError as exc:
                err = ConfigError(self.path, 1, 1, "$", f"cannot read config: {exc.strerror}")
                return self._reject(source, None, (err,), actor)
            sha = hashlib.sha256(raw).hexdigest()
            current = self.holder.current
            if current is not None and not force and await self._unchanged(raw, sha, current):
                self.counts["unchanged"] += 1
                self._accepted(current.version)  # a rejected edit was undone
                audit.config_unchanged(current, source, actor)
                return ReloadResult("unchanged", current.version)
            try:
                graph, loaded = await asyncio.to_thread(
                    build_graph, raw, self.path, self.runtime, self.environment,
                    self._version + 1, source, self._check_bind,
                )
            except ConfigErrors as exc:
                return self._reject(source, sha, exc.errors, actor)
            except Exception as exc:  # a gateway bug: reject, and keep serving the last good one
                log.exception("config_load_failed", path=self.path, source=source)
                return self._reject(source, sha, (_internal_error(self.path, exc),), actor)
            self.inputs = Inputs.of(loaded)
            self._swap(graph, current, source)
            audit.config_applied(current, graph, source, actor, self.environment)
            return ReloadResult("applied", graph.version)

    def _check_bind(self, graph: RoutingGraph, loaded) -> None:
        """The start-up bind check, on every reload: a config that would leave a server
        listening beyond loopback without keys or admin token is rejected."""
        if self.bind_host is None:
            return
        errors = bind_errors(graph, self.bind_host, loaded.source)
        if errors:
            raise ConfigErrors(errors)

    async def _unchanged(self, raw: bytes, sha: str, current: RoutingGraph) -> bool:
        if self.inputs is None:
            return current.sha256 == sha
        return await asyncio.to_thread(self.inputs.unchanged, raw)

    def watched_files(self) -> frozenset[str]:
        """The config file and the files it includes (absolute paths)."""
        if self.inputs is None:
            return frozenset({os.path.abspath(self.path)})
        return self.inputs.paths() | {os.path.abspath(self.path)}

    def _swap(self, graph: RoutingGraph, previous: RoutingGraph | None, source: str) -> None:
        self.holder.current = graph  # the swap: one reference assignment
        self._version = graph.version
        self.counts["applied"] += 1
        dropped = self.runtime.state.retain_only(graph.state_keys)
        spawn(self._prune_clients(), "reload:prune-clients")
        closable = [item for item in dropped if hasattr(item, "aclose")]
        if closable:  # e.g. the counters of a state backend the new config no longer uses
            spawn(_close_later(closable), "reload:close-dropped")
        for listener in self.listeners:
            listener(graph)
        self._accepted(graph.version)
        log.info("config_applied", version=graph.version, sha256=graph.sha256[:12], source=source,
                 path=self.path, **route_changes(previous, graph))
        log_warnings(graph)

    def _accepted(self, version: int) -> None:
        """The file is good again after a rejection: say which version is live, and stop
        showing the rejection (it describes a file that is gone)."""
        if self.last_rejection is None:
            return
        log.info("config_accepted", version=version, path=self.path,
                 rejected_at=_iso(self.last_rejection.at))
        self.last_rejection = None

    async def _prune_clients(self) -> None:
        def live() -> set[tuple]:
            graph = self.holder.current
            return graph.client_keys() if graph else set()

        await self.runtime.clients.prune(live)

    def _reject(self, source: str, sha: str | None, errors: tuple[ConfigError, ...],
                actor: str | None = None) -> ReloadResult:
        self.counts["rejected"] += 1
        self.last_rejection = Rejection(time.time(), source, sha, errors)
        for err in errors:
            log.error("config_error", error=str(err))
        running = self.holder.current.version if self.holder.current else None
        log.error("config_rejected", path=self.path, source=source, errors=len(errors),
                  still_serving_version=running)
        scrub = self.holder.current.scrubber.text if self.holder.current else str
        listed = [scrub(str(err)) for err in errors[:MAX_ALERT_ERRORS]]
        emit(CONFIG_REJECTED, self.path, source=source, still_serving_version=running,
             errors=listed, error_count=len(errors))
        audit.config_rejected(self.holder.current, self.path, source, actor, sha, listed)
        return ReloadResult("rejected", running, errors)


async def _close_later(items: list, grace: float = 30.0) -> None:
    await asyncio.sleep(grace)  # requests that started on the old graph may still use them
    for item in items:
        try:
            await item.aclose()
        except Exception:  # closing must never break serving
            log.exception("state_close_failed", item=type(item).__name__)


def route_changes(old: RoutingGraph | None, new: RoutingGraph) -> dict[str, list[str]]:
    """Which routes a swap added, removed and changed (by config content)."""
    before = old.route_specs if old else {}
    after = new.route_specs
    return {
        "routes_added": sorted(set(after) - set(before)),
        "routes_removed": sorted(set(before) - set(after)),
        "routes_changed": sorted(n for n in set(after) & set(before) if after[n] != before[n]),
    }


SETTLE_SECONDS = 0.3  # a change is applied once the files have not changed for this long
MAX_SETTLE_SECONDS = 5.0  # a file rewritten without pause is read after this long anyway


async def watch(reloader: Reloader, stop: asyncio.Event) -> None:
    """Reload on every change of the config file or a file it includes. Watches their
    directories, because editors save by writing a new file and renaming it over the old one,
    and every symlink on the way to them (a ConfigMap's ``..data`` swap, a link's target edited
    elsewhere). Reads a change once the files have settled (SETTLE_SECONDS without a further
    write), so a save written in two parts is never applied half-written. Re-arms when a change
    moves the set of paths (includes, links). Never gives up on a bad file."""
    rearmed = False
    while not stop.is_set():
        paths = watched_paths(reloader.watched_files())
        directories = watched_directories(paths)
        if not directories:  # the whole folder is gone for now: look again shortly
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            continue

        def is_config(_change, path: str, paths=paths) -> bool:
            return os.path.abspath(path) in paths

        changes = awatch(*directories, watch_filter=is_config, debounce=100, step=20,
                         stop_event=stop, recursive=False)
        try:
            async with contextlib.aclosing(changes):
                if rearmed:  # a save while re-arming would be missed: look once (cheap if none)
                    await _settle_and_reload(reloader, paths, stop)
                async for _changes in changes:
                    await _settle_and_reload(reloader, paths, stop)
                    if watched_paths(reloader.watched_files()) != paths:
                        break  # includes or links changed: watch the new set
        except Exception:  # e.g. a watched folder removed under the watcher: watch afresh
            log.warning("config_watch_restarted", path=reloader.path, exc_info=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
        rearmed = True


async def _settle_and_reload(reloader: Reloader, paths: frozenset[str],
                             stop: asyncio.Event) -> None:
    """Wait until ``paths`` stay unchanged for SETTLE_SECONDS (at most MAX_SETTLE_SECONDS),
    then reload."""
    before = signature(paths)
    deadline = time.monotonic() + MAX_SETTLE_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), SETTLE_SECONDS)
            return  # stopping
        now = signature(paths)
        if now == before:
            break
        before = now
    await _reload_logged(reloader)


async def _reload_logged(reloader: Reloader) -> None:
    try:
        await reloader.reload("file")
    except Exception:  # a bug must not stop hot reload for the life of the process
        log.exception("reload_failed", path=reloader.path)


def _internal_error(path: str, exc: Exception) -> ConfigError:
    """Only the exception's type: its text may quote config values (secrets); the log has the
    traceback."""
    return ConfigError(path, 1, 1, "$", f"the gateway failed to load this config "
                       f"({type(exc).__name__}; the log has the traceback)", "a gateway bug: "
                       "please report it with the config; the last good config keeps serving")


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()



def log_warnings(graph: RoutingGraph) -> None:
    for warning in graph.warnings:
        log.warning("config_warning", warning=str(warning))
