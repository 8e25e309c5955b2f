"""gateway rollback: restore a stored config version into the config file.

    gateway rollback [VERSION | --steps N] [--config FILE]

The stored text is validated as it would be served now (current schema, plugins and
environment variables), recorded as a new version (source rollback) and written back
atomically; a running `gateway serve` picks it up like any edit. Exit 0 done (or nothing to
do), 1 refused or failed.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

from ..config.diff import diff
from ..config.rollback import RollbackError, RollbackRefused, check, pick_version, rollback
from ..config.versions import StoreError
from ..errors import ConfigErrors
from ..store.audit_db import cli_actor, record
from ._common import add_config_options, add_format_option, fail, print_json, store_for
from .diff import SideError, file_side, render, version_side


def register(sub) -> None:
    p = sub.add_parser("rollback", help="restore a stored config version into the file")
    p.add_argument("version", nargs="?", type=int, metavar="VERSION",
                   help="the version to restore (see `gateway history`)")
    p.add_argument("--steps", "-s", type=int, metavar="N",
                   help="go N versions back from the newest (default 1)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and show what would change, write nothing")
    p.add_argument("--force", action="store_true",
                   help="restore a version of another (or an unknown) config into this file")
    add_config_options(p)
    add_format_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.version is not None and args.steps is not None:
        return fail("give VERSION or --steps, not both")
    store = store_for(args.config, args.environment)
    try:
        target = pick_version(store, args.version, args.steps, force=args.force)
        preview = _preview(args, target) if args.format == "human" else None
        if args.dry_run:
            check(args.config, target, environment=args.environment)
            return _report(args, {"result": "dry-run", "restored_from": target.number,
                                  "sha256": target.sha256, "written": []}, preview)
        result = rollback(store, args.config, target, environment=args.environment)
    except RollbackRefused as exc:
        if args.format == "json":
            print_json({"result": "refused", "restored_from": exc.number,
                        "errors": [e.as_dict() | {"text": str(e)} for e in exc.errors]})
        else:
            print(f"gateway: {args.config}: not rolled back: {exc}", file=sys.stderr)
        return 1
    except RollbackError as exc:
        return fail(f"{args.config}: {exc}", 1)
    except StoreError as exc:
        return fail(str(exc), 1)
    except ConfigErrors as exc:  # --dry-run
        refused = RollbackRefused(target.number, exc)
        print(f"gateway: {args.config}: would not roll back: {refused}", file=sys.stderr)
        return 1
    record(store.data_dir, cli_actor(), "config.rollback", args.config,
           {"restored_from": result.restored_from, "version": result.number,
            "sha256": result.sha256, "changed": result.changed, "written": list(result.written)})
    body = {
        "result": "rolled back" if result.changed else "unchanged",
        "version": result.number,
        "restored_from": result.restored_from,
        "sha256": result.sha256,
        "written": list(result.written),
    }
    return _report(args, body, preview)


def _preview(args: argparse.Namespace, target) -> str | None:
    """The semantic diff file -> restored version, for people; None when it cannot be made."""
    environment = args.environment or os.environ.get("GATEWAY_ENV") or target.environment
    try:
        old = file_side(args.config, environment, f"{args.config} (now)")
        new = version_side(target, args.config, environment,
                           f"version {target.number} ({target.applied_at}, {target.source})")
    except (SideError, ConfigErrors):
        return None
    buffer = io.StringIO()
    render(diff(old, new), buffer)
    return buffer.getvalue()


def _report(args: argparse.Namespace, body: dict, preview: str | None) -> int:
    if args.format == "json":
        print_json(body)
        return 0
    if preview:
        print(preview, end="")
    n = body["restored_from"]
    if body["result"] == "dry-run":
        print(f"{args.config}: version {n} validates; --dry-run: nothing written")
    elif body["result"] == "unchanged":
        print(f"{args.config}: already holds version {n}'s text; nothing to do")
    else:
        print(f"{args.config}: restored version {n} (sha256 {body['sha256'][:12]}) as version "
              f"{body['version']}; a running `gateway serve` reloads it within a second")
    return 0
