"""structlog set-up: JSON lines (or a readable console on a terminal), secrets scrubbed."""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

SECRET_KEYS = frozenset(
    {"api_key", "authorization", "admin_token", "x-api-key", "password", "secret", "token",
     "azure_ad_token", "aws_secret_access_key", "aws_session_token"}
)


def _scrub(_, __, event: dict) -> dict:
    for key in SECRET_KEYS.intersection(event):
        event[key] = "***"
    return event


def configure(level: str = "info", json: bool | None = None) -> None:
    """Configure structlog once per process. ``json=None`` picks JSON unless stderr is a TTY."""
    if json is None:
        json = not sys.stderr.isatty()
    processors: list = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _scrub,
    ]
    if json:
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
        factory = structlog.BytesLoggerFactory(sys.stderr.buffer)
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)
        ),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str = "gateway"):
    return structlog.get_logger(name)
