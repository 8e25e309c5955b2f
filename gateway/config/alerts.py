"""`observability.alerts` -> the webhooks the server's dispatcher (server/alerts.py) sends
events to. The schema has checked the shapes; here names are made canonical and durations
parsed, once per compile."""

from __future__ import annotations

from typing import Any

from ..events import AlertWebhook, canonical_kind
from ..units import seconds

DEFAULT_COOLDOWN = "5m"
DEFAULT_TIMEOUT = "5s"
DEFAULT_ATTEMPTS = 4


def compile_alerts(observability: dict[str, Any]) -> tuple[AlertWebhook, ...]:
    """The webhooks of ``observability`` (secrets already resolved), in config order."""
    return tuple(
        AlertWebhook(
            url=entry["webhook"],
            kinds=frozenset(canonical_kind(kind) for kind in entry["on"]),
            secret=entry.get("secret", ""),
            cooldown=seconds(entry.get("cooldown", DEFAULT_COOLDOWN)),
            timeout=seconds(entry.get("timeout", DEFAULT_TIMEOUT)),
            attempts=entry.get("attempts", DEFAULT_ATTEMPTS),
        )
        for entry in observability.get("alerts") or ()
    )
