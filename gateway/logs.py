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


LEVELS = ("debug", "info", "warning", "error")


def configure(level: str = "info", json: bool | None = None, *, final: bool = True) -> None:
    """Configure structlog for this process: events below ``level`` are dropped. ``json=None``
    picks JSON unless stderr is a TTY. ``final=False`` keeps loggers from caching this set-up,
    so that a later configure() (once the config has said server.log_level) reaches them too."""
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
        factory: structlog.BytesLoggerFactory | structlog.PrintLoggerFactory
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
        cache_logger_on_first_use=final,
    )


def get_logger(name: str = "gateway"):
    return structlog.get_logger(name)
