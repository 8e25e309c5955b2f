"""What the server writes to the audit trail (store/audit_db.py): config changes applied or
refused by a reload, with who asked and a diff summary (config/diff.py). Written from a
worker thread, never on a request's path."""

from __future__ import annotations

import asyncio
from typing import Any

from ..config.diff import Side, diff
from ..config.loader import load_bytes
from ..errors import ConfigErrors
from ..graph.graph import RoutingGraph
from ..store.audit_db import record
from ..store.tasks import spawn

WATCHER = "watcher"  # the config file changed on disk: who changed it is git's business
MAX_CHANGES = 20  # changes listed in a row (the count is always there)


def diff_summary(old: RoutingGraph | None, new: RoutingGraph,
                 environment: str | None = None) -> dict[str, Any]:
    """Routes added, removed and changed, other sections changed, and the first changes
    (secrets shown as their references only: config/diff.py masks them)."""
    if old is None:
        return {}
    try:
        result = diff(Side(f"version {old.version}", _load(old, environment)),
                      Side(f"version {new.version}", _load(new, environment)))
    except ConfigErrors:  # an include gone since: the route-level summary still holds
        return {"routes": _route_names(old, new)}
    out = result.as_dict()
    return {"routes": out["routes"], "sections": out["sections"],
            "change_count": len(out["changes"]),
            "changes": [f"{c['kind']} {c['section']}{'.' + c['name'] if c['name'] else ''}"
                        f"{'.' + c['path'] if c['path'] else ''}"
                        for c in out["changes"][:MAX_CHANGES]]}


def _load(graph: RoutingGraph, environment: str | None):
    return load_bytes(graph.text.encode(), graph.path, environment=environment, keep_refs=True)


def _route_names(old: RoutingGraph, new: RoutingGraph) -> dict[str, list[str]]:
    before, after = old.route_specs, new.route_specs
    return {"added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
            "changed": sorted(n for n in set(after) & set(before) if after[n] != before[n])}


def config_applied(previous: RoutingGraph | None, graph: RoutingGraph, source: str,
                   actor: str | None, environment: str | None) -> None:
    def write() -> None:
        details = {"source": source, "version": graph.version, "sha256": graph.sha256,
                   "previous_version": previous.version if previous else None,
                   "diff": diff_summary(previous, graph, environment)}
        record(graph.settings.data_dir, actor or WATCHER, "config.applied", graph.path, details,
               once=f"config.applied:{graph.path}:{graph.version}:{graph.sha256}")

    spawn(asyncio.to_thread(write), "audit:config-applied")


def config_rejected(running: RoutingGraph | None, path: str, source: str, actor: str | None,
                    sha256: str | None, errors: list[str]) -> None:
    if running is None:
        return
    data_dir = running.settings.data_dir
    details = {"source": source, "sha256": sha256, "still_serving_version": running.version,
               "errors": errors}
    once = f"config.rejected:{path}:{sha256}:{running.version}" if sha256 else None
    spawn(asyncio.to_thread(record, data_dir, actor or WATCHER, "config.rejected", path, details,
                            once=once), "audit:config-rejected")


def config_unchanged(running: RoutingGraph, source: str, actor: str | None) -> None:
    """A reload someone asked for found nothing to change (recorded: they did act)."""
    if actor is None:
        return
    spawn(asyncio.to_thread(record, running.settings.data_dir, actor, "config.reload_unchanged",
                            running.path, {"source": source, "version": running.version}),
          "audit:config-unchanged")
