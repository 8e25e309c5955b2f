"""The `gateway` command. Argument parsing only: each subcommand lives in its own module here
and calls into the package. A module registers itself with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import sys

from . import audit, diff, history, init, keys, rollback, route, secrets, serve, test, usage, validate

COMMANDS = (serve, validate, diff, history, rollback, route, test, init, keys, secrets, usage,
            audit)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="gateway", description="Bodhi Gateway: an LLM API gateway")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    from ..pluginmanager import default_manager

    default_manager().hook.register_commands(subparsers=sub)  # commands from plugins
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..pluginmanager import PluginConflict

    try:
        parser = build_parser()
    except PluginConflict as exc:  # which plugin would win is an accident: refuse to guess
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
