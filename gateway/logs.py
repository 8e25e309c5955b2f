"""structlog set-up: JSON lines (or a readable console on a terminal), secrets scrubbed."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
import structlog

try:  # structlog's configuration as it is now, read per line; private, hence the fallback
    from structlog._config import _CONFIG
except ImportError:  # a structlog without it: every line goes through structlog's chain
    _CONFIG = None  # type: ignore[assignment]

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
    global _FAST
    renderer = None
    if json:
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        processors += [structlog.processors.format_exc_info, renderer]
        factory: structlog.BytesLoggerFactory | structlog.PrintLoggerFactory
        factory = structlog.BytesLoggerFactory(sys.stderr.buffer)
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
        factory = structlog.PrintLoggerFactory(sys.stderr)
    threshold = getattr(logging, level.upper(), logging.INFO)
    wrapper = structlog.make_filtering_bound_logger(threshold)
    structlog.configure(
        processors=processors,
        wrapper_class=wrapper,
        logger_factory=factory,
        cache_logger_on_first_use=final,
    )
    _FAST = (_FastInfo(processors, factory, wrapper, renderer, threshold <= logging.INFO)
             if renderer is not None else None)


class _FastInfo:
    """configure()'s JSON set-up, run without structlog's machinery: what ``info_line`` writes
    while that set-up is still structlog's (a test's capture_logs, or any later configure
    that is not ours, sends every event through structlog again)."""

    __slots__ = ("processors", "factory", "wrapper", "renderer", "enabled", "out")

    def __init__(self, processors: list, factory: Any, wrapper: Any, renderer: Any,
                 enabled: bool):
        self.processors = list(processors)  # a copy: capture_logs changes the list in place
        self.factory, self.wrapper, self.renderer, self.enabled = factory, wrapper, renderer, enabled
        self.out = factory()  # a BytesLogger: the same file, and the same lock, as structlog's

    def current(self) -> bool:
        return (_CONFIG is not None
                and _CONFIG.logger_factory is self.factory
                and _CONFIG.default_wrapper_class is self.wrapper
                and _CONFIG.default_processors == self.processors)


_FAST: _FastInfo | None = None
_second: tuple[int, str] = (-1, "")  # the last second stamped, and its text


def iso_utc(ns: int) -> str:
    """``datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat()`` as TimeStamper(fmt="iso",
    utc=True) writes it (its microseconds floored, left out when 0, "Z" for "+00:00"), with
    the date and time of day formatted once a second rather than per event."""
    global _second
    seconds, rest = divmod(ns, 1_000_000_000)
    if seconds != _second[0]:
        _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    micros = rest // 1000
    return f"{_second[1]}.{micros:06d}Z" if micros else f"{_second[1]}Z"


def info_line(logger: Any, event: str, fields: dict[str, Any]) -> None:
    """``logger.info(event, **fields)`` for a logger of get_logger() without bound values; the
    same line, but when configure()'s JSON set-up is in force it is built here in one step
    rather than by structlog's chain of processors (a third of the cost of the access log's
    line per request). ``fields`` is used up (it becomes the event)."""
    fast = _FAST
    if fast is None or "exc_info" in fields or not fast.current():
        logger.info(event, **fields)
        return
    if not fast.enabled:
        return
    # What add_log_level, TimeStamper(fmt="iso", utc=True), _scrub and JSONRenderer do.
    fields["event"] = event
    fields["level"] = "info"
    fields["timestamp"] = iso_utc(time.time_ns())
    _scrub(None, None, fields)
    fast.out.msg(fast.renderer(None, "info", fields))


def get_logger(name: str = "gateway"):
    return structlog.get_logger(name)
