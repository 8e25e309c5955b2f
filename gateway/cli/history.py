"""gateway history: the config versions a gateway applied, newest first, the running one marked."""

from __future__ import annotations

import argparse

from ..config.versions import StoreError
from ._common import (
    AdminClient,
    AdminError,
    add_admin_options,
    add_config_options,
    add_format_option,
    fail,
    print_json,
    require_config,
    store_for,
)


def register(sub) -> None:
    p = sub.add_parser("history", help="list stored config versions, newest first")
    add_config_options(p)
    add_format_option(p)
    add_admin_options(p)
    p.add_argument("--limit", "-n", type=int, help="show at most N versions")
    p.add_argument("--offline", action="store_true",
                   help="do not ask a running gateway which version it serves")
    p.add_argument("--all", action="store_true", dest="everything",
                   help="every config's versions in the store, not only this config's")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (missing := require_config(args.config)) is not None:
        return missing
    store = store_for(args.config, args.environment)
    try:
        versions = store.list(args.limit, everything=args.everything)
    except StoreError as exc:
        return fail(str(exc))
    running, asked = None, None
    if not args.offline:
        client = AdminClient(args.config, args.environment, args.url, args.admin_token,
                             timeout=2.0)
        asked = client.url
        try:
            answer = client.get("/admin/config/versions?limit=1")
            if answer.get("config", store.config) == store.config:  # it serves this config
                running = answer.get("running")
        except (AdminError, AttributeError):
            running = None
    if args.format == "json":
        print_json({
            "config": args.config, "identity": store.config, "store": store.path,
            "running": running,
            "running_from": asked if running is not None else None,
            "versions": [v.summary() | {"running": v.number == running} for v in versions],
        })
        return 0
    if not versions:
        print(f"{args.config}: no versions recorded yet in {store.path} (a version is recorded "
              "each time `gateway serve` applies the config)")
        return 0
    if running is not None:
        status = f"running: version {running} at {asked}"
    else:
        own = [v for v in versions if v.config == store.config]
        status = f"last applied: version {own[0].number}" if own else "none applied yet"
        if asked:
            status += f"; no gateway serving it answered at {asked}"
    whose = "version(s) of every config" if args.everything else "version(s)"
    print(f"{args.config}: {len(versions)} {whose} in {store.path} ({status})")
    print(f"     {'#':>4}  {'applied at (UTC)':20}  {'source':8}  {'sha256':12}  git")
    for v in versions:
        mark = "*" if v.number == running else " "
        git = ""
        if v.git_commit:
            git = v.git_commit[:10] + (" (dirty)" if v.git_dirty else "")
        elif v.git_dirty:
            git = "(no commit yet)"
        extra = []
        if v.restored_from:
            extra.append(f"restored from {v.restored_from}")
        if v.environment:
            extra.append(f"env {v.environment}")
        if v.files:
            extra.append(f"+{len(v.files)} included")
        if v.config != store.config:
            extra.append(f"config {v.config}" if v.config else
                         "unknown config (rollback needs --force)")
        tail = ("  " + ", ".join(extra)) if extra else ""
        print(f"  {mark}  {v.number:>4}  {v.applied_at:20}  {v.source:8}  {v.sha256[:12]}  "
              f"{git:18}{tail}".rstrip())
    return 0
