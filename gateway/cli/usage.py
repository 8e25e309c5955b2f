"""gateway usage: requests, tokens and cost per key, route and target, from the data dir."""

from __future__ import annotations

import argparse
import json

from ..middleware.usage import period_range, query_usage, usage_db
from ._common import add_format_option, add_location_args, data_dir_of, require_config


def register(sub) -> None:
    p = sub.add_parser("usage", help="requests, tokens and cost by key, route and target")
    p.add_argument("--key", help="only this key")
    p.add_argument("--period", default="month",
                   help="today, month (default), YYYY-MM, YYYY-MM-DD or all")
    p.add_argument("--group-by", default="key,route,target",
                   help="comma-separated: key, route, target, day")
    add_format_option(p)
    add_location_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.data_dir and (missing := require_config(args.config)) is not None:
        return missing
    since, until = period_range(args.period)
    data_dir = data_dir_of(args.config, args.data_dir, getattr(args, "environment", None))
    rows = query_usage(usage_db(data_dir), key=args.key, since=since, until=until,
                       group_by=tuple(args.group_by.split(",")))
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    group = [g for g in args.group_by.split(",") if rows and g in rows[0]]
    header = [g.upper() for g in group] + ["REQUESTS", "PROMPT", "COMPLETION", "COST USD",
                                           "ESTIMATED"]
    print("  ".join(f"{h:<18}" for h in header))
    for row in rows:
        cells = [str(row[g] or "-") for g in group] + [
            str(row["requests"]), str(row["prompt_tokens"]), str(row["completion_tokens"]),
            f"{row['cost_usd']:.6f}", str(row["estimated_requests"])]
        print("  ".join(f"{c:<18}" for c in cells))
    if not rows:
        print(f"no usage recorded for {args.period}")
    elif any(row["estimated_requests"] for row in rows):
        print("ESTIMATED: requests whose provider reported no usage; their tokens and cost "
              "are estimates")
    return 0
