"""`gateway logs [--follow] [--route R] [--status 5xx|4xx|error|ok|CODE] [--since 1h]
[--limit N] [--json]`: the request log, read from its SQLite file directly (the config's
`observability.request_log.path`, else logs.db in the data directory): a table, oldest of the
shown rows first, or one JSON object per line; --follow polls for new rows until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from typing import Any, Callable

from ..config.request_log import log_path, request_log_settings
from ..config.versions import data_dir_for
from ..store import logs_db
from ..units import iso_utc
from .cache_cli import config_data
from .request_log_api import BadParameter, filter_of

POLL_EVERY = 0.5  # seconds between looks for new rows with --follow
COLUMNS = (("TIME", 20), ("STATUS", 6), ("ROUTE", 16), ("TARGET", 24), ("KEY", 12),
           ("MS", 8), ("TOKENS", 11), ("COST USD", 10), ("CACHE", 5), ("TRIES", 5),
           ("REQUEST ID", 0))


def register(subparsers) -> None:
    p = subparsers.add_parser("logs", help="the request log: recent requests, filtered; --follow")
    p.add_argument("--follow", "-F", action="store_true", help="keep printing new requests "
                   "until Ctrl-C")
    p.add_argument("--route", "-r", help="only this route")
    p.add_argument("--status", "-s", help="5xx, 4xx, error, ok or a status code such as 429")
    p.add_argument("--since", help="only requests that arrived within this time: 5m, 1h, 7d")
    p.add_argument("--limit", "-n", default="50", help="how many (default 50, at most 1000)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--config", "-c", default="gateway.yaml",
                   help="config file (default: gateway.yaml)")
    p.add_argument("--data-dir", help="the data directory, instead of the config's")
    p.set_defaults(func=run)


def log_file(args: argparse.Namespace) -> str:
    data = config_data(args)
    observability = (data or {}).get("observability")
    settings = request_log_settings(observability if isinstance(observability, dict) else None)
    data_dir = (os.path.abspath(args.data_dir) if args.data_dir
                else data_dir_for(args.config, data))
    return log_path(settings, data_dir)


def run(args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep) -> int:
    try:
        where = filter_of(args.limit, args.status, args.route, args.since, None)
    except BadParameter as exc:
        print(f"gateway logs: --{exc.param.replace('_', '-')}: {exc}", file=sys.stderr)
        return 2
    file = log_file(args)
    if not os.path.exists(file):
        print(f"gateway logs: no request log at {file} (is observability.request_log on, and "
              "has the gateway served a request?)", file=sys.stderr)
        return 1
    conn = logs_db.connect(file)
    try:
        rows = list(reversed(logs_db.rows(conn, where)))
        show = _json_line if args.json else _table_line
        if not args.json:
            print(_header())
        for row in rows:
            print(show(row))
        if not args.follow:
            if not rows and not args.json:
                print("(no requests match)")
            return 0
        last = rows[-1]["id"] if rows else _last_id(conn)
        try:
            while True:
                sys.stdout.flush()
                sleep(POLL_EVERY)
                new = list(reversed(logs_db.rows(conn, _after(where, last))))
                for row in new:
                    print(show(row))
                if new:
                    last = new[-1]["id"]
        except KeyboardInterrupt:
            return 0
    except sqlite3.Error as exc:
        print(f"gateway logs: {file}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()


def _after(where: logs_db.Filter, last: int) -> logs_db.Filter:
    """New rows only (any number), the other filters kept; --since no longer matters."""
    return logs_db.Filter(limit=10_000, status=where.status, route=where.route, after_id=last)


def _last_id(conn: sqlite3.Connection) -> int:
    return conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {logs_db.TABLE}").fetchone()[0]


def _json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False)


def _header() -> str:
    return "  ".join(f"{name:<{width}}" for name, width in COLUMNS).rstrip()


def _table_line(row: dict[str, Any]) -> str:
    tokens = ("-" if row["tokens_in"] is None
              else f"{row['tokens_in']}/{row['tokens_out'] if row['tokens_out'] is not None else 0}")
    cells = [iso_utc(row["time"]), str(row["status"]), row["route"] or "-",
             row["target"] or "-", row["key"] or "-", _ms(row["latency_ms"]), tokens,
             f"{row['cost_usd']:.6f}" if row["cost_usd"] is not None else "-",
             row["cache"] or "-", str(len(row["attempts"])), row["request_id"]]
    line = "  ".join(_fit(cell, width) for cell, (_, width) in zip(cells, COLUMNS)).rstrip()
    if row["error"]:
        line += "\n    " + _fit(row["error"].replace("\n", " "), 140)
    return line


def _ms(value: float) -> str:
    """Milliseconds to read at a glance: 0.4, 12, 812."""
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _fit(text: str, width: int) -> str:
    if not width:
        return text
    return f"{text:<{width}}" if len(text) <= width else text[: width - 1] + "…"
