"""`observability.request_log` -> RequestLogSettings, once per compile.

Two spellings, one meaning: ``request_log: true|false`` (version 1's boolean) or the object
``request_log: {enabled, retention, log_bodies, queue_size, path}``; ``observability.retention``
and ``observability.log_bodies`` (the issue's names) are shorthands for the object's keys. The
schema has checked the shapes; a setting written in both places is refused by ``conflicts``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from ..units import seconds

DEFAULT_RETENTION = "30d"
DEFAULT_QUEUE_SIZE = 10_000
FILE = "logs.db"
SHORTHANDS = ("retention", "log_bodies")  # observability.X == observability.request_log.X


@dataclass(frozen=True, slots=True)
class RequestLogSettings:
    enabled: bool = True
    retention_s: float = seconds(DEFAULT_RETENTION)
    log_bodies: bool = False
    queue_size: int = DEFAULT_QUEUE_SIZE
    path: str = FILE  # relative: inside the data directory


def request_log_settings(observability: Mapping[str, Any] | None) -> RequestLogSettings:
    """The request log's settings from a validated ``observability`` mapping."""
    observability = observability or {}
    given = observability.get("request_log", True)
    entry: dict[str, Any] = dict(given) if isinstance(given, Mapping) else {"enabled": given}
    for key in SHORTHANDS:
        if key in observability:
            entry.setdefault(key, observability[key])
    return RequestLogSettings(
        enabled=bool(entry.get("enabled", True)),
        retention_s=seconds(entry.get("retention", DEFAULT_RETENTION)),
        log_bodies=bool(entry.get("log_bodies", False)),
        queue_size=int(entry.get("queue_size", DEFAULT_QUEUE_SIZE)),
        path=str(entry.get("path", FILE)),
    )


def log_path(settings: RequestLogSettings, data_dir: str) -> str:
    """The log file: ``path`` as written when absolute, else inside the data directory."""
    return os.path.join(data_dir, os.path.expanduser(settings.path))


def conflicts(observability: Mapping[str, Any] | None) -> list[tuple[tuple[str, ...], str]]:
    """(json path, message) for each shorthand also written inside the object form."""
    observability = observability or {}
    given = observability.get("request_log")
    if not isinstance(given, Mapping):
        return []
    return [(("observability", key),
             f"observability.{key} and observability.request_log.{key} are both set: "
             f"write it in one place (they mean the same)")
            for key in SHORTHANDS if key in observability and key in given]
