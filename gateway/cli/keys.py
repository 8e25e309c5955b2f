"""gateway keys create|list|revoke|hash: virtual keys stored hashed in the data directory."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from ..keys.options import key_fields, parse_expiry
from ..keys.store import KeyError_, KeyStore, hash_key
from ..keys.store import keystore_path
from ._common import add_location_args, data_dir_of

from ..keys.options import PERIODS


def register(sub) -> None:
    p = sub.add_parser("keys", help="create, list, revoke virtual keys; hash a key for gateway.yaml")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    create = verbs.add_parser("create", help="create a key; prints it once")
    create.add_argument("name")
    create.add_argument("--routes", help="comma-separated routes it may use (default: all)")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--budget", type=float, metavar="USD", help="spending budget in USD")
    create.add_argument("--period", choices=PERIODS, default="monthly", help="budget period")
    create.add_argument("--expires", help="a duration (30d, 12h) or a date (2027-01-31)")
    create.add_argument("--metadata", action="append", default=[], metavar="K=V",
                        help="metadata merged into its requests (repeatable)")
    add_location_args(create)
    create.set_defaults(func=cmd_create)

    listing = verbs.add_parser("list", help="list keys (never their values)")
    listing.add_argument("--format", choices=("table", "json"), default="table")
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


def cmd_create(args: argparse.Namespace) -> int:
    try:
        fields = key_fields(args.routes, args.rpm, args.tpm, args.budget, args.period, args.metadata)
        expires = parse_expiry(args.expires)
        raw, key = _store(args).create(args.name, expires_at=expires, **fields)
    except (ValueError, KeyError_) as exc:
        print(f"gateway keys create: {exc}", file=sys.stderr)
        return 1
    print(raw)
    print(f"key '{key.name}' created; this is the only time it is shown. Store it safely.",
          file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    keys = [k.public() for k in _store(args).list()]
    if args.format == "json":
        print(json.dumps(keys, indent=2))
        return 0
    print(f"{'NAME':<20} {'ROUTES':<24} {'LIMITS':<28} {'BUDGET':<18} {'EXPIRES':<21} STATUS")
    for k in keys:
        limits = ", ".join(f"{n}={v}" for n, v in k["limits"].items()) or "-"
        budget = f"${k['budget']['usd']:g}/{k['budget']['period']}" if k["budget"] else "-"
        status = f"revoked {k['revoked_at']}" if k["revoked_at"] else "active"
        print(f"{k['name']:<20} {','.join(k['routes']):<24} {limits:<28} {budget:<18} "
              f"{k['expires_at'] or '-':<21} {status}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    try:
        _store(args).revoke(args.name)
    except KeyError_ as exc:
        print(f"gateway keys revoke: {exc}", file=sys.stderr)
        return 1
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
