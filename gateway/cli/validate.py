"""gateway validate: load, validate and compile config files without serving them."""

from __future__ import annotations

import argparse
import sys

from ..config.compiler import compile_file
from ..errors import ConfigErrors


def register(sub) -> None:
    p = sub.add_parser("validate", help="check config files; exit 1 on any error")
    p.add_argument("files", nargs="*", default=["gateway.yaml"], metavar="FILE")
    p.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Errors and warnings print as FILE:LINE:COL: message; exit 1 on any error."""
    failed = 0
    for path in args.files:
        try:
            graph = compile_file(path)
        except ConfigErrors as exc:
            failed += 1
            for err in exc.errors:
                print(err)
            continue
        for warning in graph.warnings:
            print(warning)
        if not args.quiet:
            print(f"{path}: OK ({len(graph.routes)} routes, {len(graph.providers)} providers)")
    if failed:
        print(f"{failed} of {len(args.files)} file(s) invalid", file=sys.stderr)
    return 1 if failed else 0
