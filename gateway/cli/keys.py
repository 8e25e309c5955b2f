"""gateway keys create|list|revoke|hash: virtual keys stored hashed in the data directory."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from ..config.key_request import FieldError, KeyRequestError, check_key_request
from ..keys.options import PERIODS
from ..keys.store import KeyError_, KeyStore, hash_key, keystore_path
from ..store.audit_db import cli_actor, record
from ._common import add_format_option, add_location_args, data_dir_of, quiet_load, require_config


def register(sub) -> None:
    p = sub.add_parser("keys", help="create, list, revoke virtual keys; hash a key for gateway.yaml")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    create = verbs.add_parser("create", help="create a key; prints it once")
    create.add_argument("name")
    create.add_argument("--routes", help="comma-separated routes it may use (default: all)")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--budget", type=float, metavar="USD", help="spending budget in USD")
    create.add_argument("--period", choices=PERIODS, help="budget period (default monthly)")
    create.add_argument("--expires", help="a duration (30d, 12h) or a date (2027-01-31)")
    create.add_argument("--file-storage", metavar="SIZE",
                        help="the most its files may hold together (500MB, 2GB; default "
                             "files.max_bytes_per_key)")
    create.add_argument("--metadata", action="append", default=[], metavar="K=V",
                        help="metadata merged into its requests (repeatable)")
    add_location_args(create)
    create.set_defaults(func=cmd_create)

    listing = verbs.add_parser("list", help="list keys (never their values)")
    add_format_option(listing)
    add_location_args(listing)
    listing.set_defaults(func=cmd_list)

    revoke = verbs.add_parser("revoke", help="revoke a key; takes effect on the next request")
    revoke.add_argument("name")
    add_location_args(revoke)
    revoke.set_defaults(func=cmd_revoke)

    hashing = verbs.add_parser("hash", help="print the key_sha256 of a key read from stdin")
    hashing.set_defaults(func=cmd_hash)


def _store(args) -> KeyStore:
    return KeyStore(keystore_path(data_dir_of(args.config, args.data_dir)))


def _audit(args, action: str, key: dict) -> None:
    record(data_dir_of(args.config, args.data_dir), cli_actor(), action, key["name"], key)


# The flag each field of a key request comes from, for error messages (limits: the CLI sets
# only limits.file_storage, from --file-storage).
_FLAGS = {"name": "NAME", "routes": "--routes", "rpm": "--rpm", "tpm": "--tpm",
          "budget": "--budget", "period": "--period", "expires": "--expires",
          "metadata": "--metadata", "limits": "--file-storage"}


def cmd_create(args: argparse.Namespace) -> int:
    """Checked with the same rules as POST /admin/keys and `keys:` in gateway.yaml."""
    loaded = quiet_load(args.config, args.environment) if os.path.exists(args.config) else None
    data = loaded.data if loaded is not None and isinstance(loaded.data, dict) else {}
    routes = (data.get("routes") or {}) if loaded is not None else None  # None: not checked
    try:
        wanted = check_key_request(_request_of(args), routes)
        store = _store(args)
        first = not store.ever_issued()
        raw, key = store.create(wanted.name, **wanted.store_fields())
    except KeyRequestError as exc:
        for err in exc.errors:
            flag = _FLAGS.get(err.field.partition("[")[0].partition(".")[0], err.field)
            print(f"gateway keys create: {flag}: {err.message}", file=sys.stderr)
        return 1
    except KeyError_ as exc:
        print(f"gateway keys create: {exc}", file=sys.stderr)
        return 1
    _audit(args, "key.create", key.public())
    print(raw)
    print(f"key '{key.name}' created; this is the only time it is shown. Store it safely.",
          file=sys.stderr)
    if routes is None:
        print(f"note: --routes not checked: {args.config} does not load", file=sys.stderr)
    if first and not data.get("keys"):
        print("note: this is the first key: from now on every request to this gateway needs a "
              "key (Authorization: Bearer <key>), also after every key is revoked",
              file=sys.stderr)
    return 0


def _request_of(args: argparse.Namespace) -> dict:
    """The flags as a key request (the body POST /admin/keys takes)."""
    body: dict = {"name": args.name}
    if args.routes is not None:
        body["routes"] = [r.strip() for r in args.routes.split(",") if r.strip()]
    for name in ("rpm", "tpm", "budget", "period", "expires"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.file_storage is not None:
        body["limits"] = {"file_storage": args.file_storage}
    if args.metadata:
        meta = {}
        for item in args.metadata:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise KeyRequestError([FieldError("metadata", f"{item!r}: write it as key=value")])
            meta[name] = value
        body["metadata"] = meta
    return body


def cmd_list(args: argparse.Namespace) -> int:
    if not args.data_dir and (missing := require_config(args.config)) is not None:
        return missing
    keys = [k.public() for k in _store(args).list()]
    if args.format == "json":
        print(json.dumps(keys, indent=2, default=str))
        return 0
    print(f"{'NAME':<20} {'ROUTES':<24} {'LIMITS':<28} {'BUDGET':<18} {'EXPIRES':<21} STATUS")
    for k in keys:
        status = f"revoked {k['revoked_at']}" if k["revoked_at"] else "active"
        print(f"{k['name']:<20} {_routes(k['routes']):<24} {_limits(k['limits']):<28} "
              f"{_budget(k['budget']):<18} {k['expires_at'] or '-':<21} {status}")
    return 0


def _routes(routes) -> str:
    return ",".join(map(str, routes)) if isinstance(routes, (list, tuple)) else str(routes)


def _limits(limits) -> str:
    """Any stored value shows, even one an older version let through unchecked."""
    if isinstance(limits, dict):
        return ", ".join(f"{n}={v}" for n, v in limits.items()) or "-"
    return str(limits) if limits else "-"


def _budget(budget) -> str:
    if not budget:
        return "-"
    usd = budget.get("usd") if isinstance(budget, dict) else None
    if isinstance(usd, (int, float)) and not isinstance(usd, bool):
        return f"${usd:g}/{budget.get('period', 'monthly')}"
    return json.dumps(budget, default=str)


def cmd_revoke(args: argparse.Namespace) -> int:
    try:
        key = _store(args).revoke(args.name)
    except KeyError_ as exc:
        print(f"gateway keys revoke: {exc}", file=sys.stderr)
        return 1
    _audit(args, "key.revoke", key.public())
    print(f"key '{args.name}' revoked")
    return 0


def cmd_hash(args: argparse.Namespace) -> int:
    raw = sys.stdin.readline().strip() if not sys.stdin.isatty() else getpass.getpass("key: ")
    if not raw:
        print("gateway keys hash: no key given (pipe it in: printf %s \"$KEY\" | gateway keys hash)",
              file=sys.stderr)
        return 1
    print(hash_key(raw))
    return 0
