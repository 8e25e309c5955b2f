"""`gateway cache stats|clear [--namespace N]`: the embedded cache's entries, bytes and hit
counts per namespace, and emptying it (all of it, or one namespace), from the data dir."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import time
from types import ModuleType
from typing import Any, Callable

from ..config.loader import load_bytes, read_file
from ..config.versions import data_dir_for
from ..errors import ConfigErrors
from ..store import cache_db
from ..store.audit_db import cli_actor, record
from ..store.writer import Writer


def register(subparsers) -> None:
    p = subparsers.add_parser("cache", help="response cache: stats, clear")
    verbs = p.add_subparsers(dest="cache_command", metavar="VERB", required=True)
    stats = verbs.add_parser("stats", help="entries, bytes, hits, misses and savings per namespace")
    stats.add_argument("--json", action="store_true", help="print JSON")
    clear = verbs.add_parser("clear", help="delete cached answers (all, or one namespace)")
    for verb, func in ((stats, run_stats), (clear, run_clear)):
        verb.add_argument("--namespace", "-n", help="only this namespace")
        verb.add_argument("--config", "-c", default="gateway.yaml",
                          help="config file (default: gateway.yaml)")
        verb.add_argument("--data-dir", help="the data directory, instead of the config's")
        verb.set_defaults(func=func)


def config_data(args: argparse.Namespace) -> dict | None:
    """The data of `--config` as loaded (secrets left as references if unresolvable), or
    None when it is missing or broken."""
    if not os.path.exists(args.config):
        return None
    for keep_refs in (False, True):  # ${ENV} unset: the data dir may still be written plainly
        try:
            data = load_bytes(read_file(args.config), args.config, keep_refs=keep_refs).data
            break
        except (ConfigErrors, OSError):
            data = None  # a broken file says nothing better than the defaults
    return data if isinstance(data, dict) else None


def _redis_url(data: dict | None) -> str | None:
    """The config's `server.state` when the cache lives in Redis."""
    state = ((data or {}).get("server") or {}).get("state")
    return state if isinstance(state, str) and state.startswith(("redis://", "rediss://")) else None


def _run(args: argparse.Namespace, on_redis: Callable[[str], Any],
         job: Callable[[sqlite3.Connection], Any], empty: Any) -> Any:
    """``job`` on the embedded cache.db (``empty`` when there is none yet), or ``on_redis(url)``
    when the config keeps the cache in Redis (`--data-dir` forces the file)."""
    data = config_data(args)
    url = None if args.data_dir else _redis_url(data)
    if url is not None:
        return on_redis(url)
    path = cache_db.path(os.path.abspath(args.data_dir) if args.data_dir
                         else data_dir_for(args.config, data))
    if not os.path.exists(path):
        return empty
    writer = Writer(lambda: cache_db.connect(path), name="cache-cli")
    try:
        return writer.call(job)
    finally:
        writer.close()


def _redis() -> ModuleType:
    from ..state import redis_cache  # redis is an extra: imported only when configured

    return redis_cache


def run_stats(args: argparse.Namespace) -> int:
    rows = _run(args, lambda url: _redis().redis_stats(url, args.namespace),
                lambda db: cache_db.stats(db, args.namespace, time.time()), [])
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("the cache is empty")
        return 0
    header = ("NAMESPACE", "ENTRIES", "BYTES", "HITS", "MISSES", "SAVED TOKENS", "SAVED USD")
    print("  ".join(f"{h:<14}" for h in header))
    for row in rows:
        cells = (row["namespace"], row["entries"], row["bytes"], row["hits"], row["misses"],
                 row["saved_tokens"], f"{row['saved_usd']:.6f}")
        print("  ".join(f"{str(c):<14}" for c in cells))
    return 0


def run_clear(args: argparse.Namespace) -> int:
    deleted = _run(args, lambda url: _redis().redis_clear(url, args.namespace),
                   lambda db: cache_db.clear(db, args.namespace), 0)
    where = f" from namespace '{args.namespace}'" if args.namespace else ""
    data_dir = os.path.abspath(args.data_dir) if args.data_dir else data_dir_for(args.config,
                                                                                 config_data(args))
    record(data_dir, cli_actor(), "cache.clear", args.namespace or "*", {"deleted": deleted})
    print(f"deleted {deleted} cached answer{'s' if deleted != 1 else ''}{where}")
    return 0
