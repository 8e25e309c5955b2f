"""gateway serve: serve the config and reload it when it changes."""

from __future__ import annotations

import argparse

from ..logs import LEVELS


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve the gateway; reloads the config when it changes")
    p.add_argument("--config", "-c", default="gateway.yaml", help="config file (gateway.yaml)")
    p.add_argument("--host", help="listen address (default: server.host, 127.0.0.1)")
    p.add_argument("--port", "-p", type=int, help="listen port (default: server.port, 8080)")
    p.add_argument("--workers", "-w", type=int, help="worker processes (default 1)")
    p.add_argument("--no-watch", action="store_true", help="do not reload when the file changes")
    p.add_argument("--engine", choices=("uvicorn", "hypercorn", "granian"),
                   help="HTTP server (default: server.engine, uvicorn)")
    p.add_argument("--log-level", choices=LEVELS,
                   help="least severe log events written (default: server.log_level, info)")
    p.add_argument("--env", "-e", dest="environment", metavar="NAME",
                   help="merge the environments.NAME overlay (default: $GATEWAY_ENV)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..server.serve import serve

    return serve(args.config, host=args.host, port=args.port, workers=args.workers,
                 watch=not args.no_watch, environment=args.environment, engine_name=args.engine,
                 log_level=args.log_level)
