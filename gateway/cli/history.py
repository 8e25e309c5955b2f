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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = store_for(args.config, args.environment)
    try:
        versions = store.list(args.limit)
    except StoreError as exc:
        return fail(str(exc))
    running, asked = None, None
    if not args.offline:
        client = AdminClient(args.config, args.environment, args.url, args.admin_token,
                             timeout=2.0)
        asked = client.url
        try:
            running = client.get("/admin/config/versions?limit=1").get("running")
        except (AdminError, AttributeError):
            running = None
    if args.format == "json":
        print_json({
            "config": args.config, "store": store.path, "running": running,
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
        status = (f"last applied: version {versions[0].number}"
                  + (f"; no gateway answered at {asked}" if asked else ""))
    print(f"{args.config}: {len(versions)} version(s) in {store.path} ({status})")
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
        tail = ("  " + ", ".join(extra)) if extra else ""
        print(f"  {mark}  {v.number:>4}  {v.applied_at:20}  {v.source:8}  {v.sha256[:12]}  "
              f"{git:18}{tail}".rstrip())
    return 0
