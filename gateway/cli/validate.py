"""gateway validate: load, validate and compile config files without serving them."""

from __future__ import annotations

import argparse
import os
import sys

from ..config.compiler import compile_file
from ..errors import ConfigError, ConfigErrors
from ._common import add_format_option, no_config_message, print_json


def register(sub) -> None:
    p = sub.add_parser("validate", help="check config files; exit 1 on any error")
    p.add_argument("files", nargs="*", default=["gateway.yaml"], metavar="FILE")
    p.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    p.add_argument("--env", "-e", dest="environment", metavar="NAME",
                   help="merge the environments.NAME overlay (default: $GATEWAY_ENV)")
    add_format_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Errors and warnings go to stderr as FILE:LINE:COL: message (with --format json, all of
    it to stdout as one document); exit 1 on any error."""
    results = [check(path, args.environment) for path in args.files]
    failed = sum(1 for r in results if not r["ok"])
    if args.format == "json":
        print_json({"ok": not failed, "invalid": failed, "files": results})
        return 1 if failed else 0
    for result in results:
        for problem in result["errors"] + result["warnings"]:
            print(problem["text"], file=sys.stderr)
        if result["ok"] and not args.quiet:
            print(f"{result['path']}: OK ({result['routes']} routes, "
                  f"{result['providers']} providers)")
    if failed:
        print(f"{failed} of {len(args.files)} file(s) invalid", file=sys.stderr)
    return 1 if failed else 0


def check(path: str, environment: str | None) -> dict:
    """One file's verdict: ok, its errors and warnings, and what it defines."""
    result: dict = {"path": path, "ok": False, "errors": [], "warnings": []}
    if not os.path.exists(path):
        result["errors"] = [{"file": path, "message": "no such config file",
                             "text": f"gateway: {no_config_message(path)}"}]
        return result
    try:
        graph = compile_file(path, environment=environment)
    except ConfigErrors as exc:
        result["errors"] = [_shown(e) for e in exc.errors]
        return result
    result.update(ok=True, routes=len(graph.routes), providers=len(graph.providers),
                  warnings=[_shown(w) for w in graph.warnings])
    return result


def _shown(problem: ConfigError) -> dict:
    return problem.as_dict() | {"text": str(problem)}
