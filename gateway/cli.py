"""The `gateway` command. Argument parsing only: every command calls into the package."""

from __future__ import annotations

import argparse
import sys

from .config.compiler import compile_file
from .errors import ConfigErrors


def cmd_validate(args: argparse.Namespace) -> int:
    """Load, validate and compile each file (nothing is served); exit 1 on any error."""
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


def cmd_serve(args: argparse.Namespace) -> int:
    from .server.serve import serve

    return serve(args.config, host=args.host, port=args.port, workers=args.workers,
                 watch=not args.no_watch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Bodhi Gateway: an LLM API gateway")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve the gateway; reloads the config when it changes")
    serve.add_argument("--config", "-c", default="gateway.yaml", help="config file (gateway.yaml)")
    serve.add_argument("--host", help="listen address (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", "-p", type=int, help="listen port (default: server.port, 8080)")
    serve.add_argument("--workers", "-w", type=int, help="worker processes (default 1)")
    serve.add_argument("--no-watch", action="store_true", help="do not reload when the file changes")
    serve.set_defaults(func=cmd_serve)

    validate = sub.add_parser("validate", help="check config files; exit 1 on any error")
    validate.add_argument("files", nargs="*", default=["gateway.yaml"], metavar="FILE")
    validate.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    validate.set_defaults(func=cmd_validate)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
