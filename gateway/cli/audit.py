"""gateway audit verify|list: the audit trail of admin actions and config changes
(store/audit_db.py), read from the data directory.

    gateway audit verify   exit 0: the hash chain is intact; 1: names the first bad row
    gateway audit list [--since 1h|2026-12-01T00:00]
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta, timezone

from ..store.audit_db import AuditTrail
from ..units import seconds
from ._common import add_format_option, add_location_args, data_dir_of, fail, print_json, require_config


def register(sub) -> None:
    p = sub.add_parser("audit", help="the audit trail: verify its hash chain, list its rows")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    verify = verbs.add_parser("verify", help="check the hash chain; exit 1 naming the first "
                                             "edited, deleted or inserted row")
    listing = verbs.add_parser("list", help="who did what, when")
    listing.add_argument("--since", help="a duration back from now (1h, 7d) or an ISO time")
    for verb, func in ((verify, run_verify), (listing, run_list)):
        add_format_option(verb)
        add_location_args(verb)
        verb.set_defaults(func=func)


def _trail(args: argparse.Namespace) -> AuditTrail | int:
    if not args.data_dir and (missing := require_config(args.config)) is not None:
        return missing
    return AuditTrail(data_dir_of(args.config, args.data_dir, args.environment))


def run_verify(args: argparse.Namespace) -> int:
    trail = _trail(args)
    if isinstance(trail, int):
        return trail
    count, broken = trail.verify()
    if args.format == "json":
        print_json({"intact": broken is None, "rows": count,
                    "broken_row": broken.row if broken else None,
                    "reason": broken.reason if broken else None})
    elif broken is None:
        print(f"{trail.path}: intact, {count} row{'s' if count != 1 else ''}")
    else:
        print(f"{trail.path}: broken at row {broken.row}: {broken.reason}")
    return 0 if broken is None else 1


def run_list(args: argparse.Namespace) -> int:
    trail = _trail(args)
    if isinstance(trail, int):
        return trail
    try:
        since = _since(args.since)
    except ValueError:
        return fail(f"--since {args.since}: give a duration (30m, 1h, 7d) or an ISO time "
                    "(2026-12-01T00:00)")
    rows = trail.rows(since)
    for row in rows:
        row["details"] = json.loads(row["details"])
    if args.format == "json":
        print_json(rows)
        return 0
    for row in rows:
        print(f"{row['id']:>5}  {row['at'][:19]}Z  {row['actor']:<22} {row['action']:<24} "
              f"{row['subject']}")
    if rows:
        print(f"last hash: {rows[-1]['hash']}")
    else:
        print("no audit rows" + (f" since {since}" if since else ""))
    return 0


def _since(value: str | None) -> str | None:
    """An ISO UTC time to compare the rows' ``at`` with."""
    if value is None:
        return None
    try:
        back = seconds(value)
    except (ValueError, TypeError):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
    return (datetime.now(timezone.utc) - timedelta(seconds=back)).isoformat(timespec="microseconds")
