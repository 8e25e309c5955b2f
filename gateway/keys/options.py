"""Options of a new key, shared by `gateway keys create` and POST /admin/keys."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from ..units import seconds

PERIODS = ("daily", "weekly", "monthly", "total")


def parse_expiry(value: str | None, now: float | None = None) -> float | None:
    """A duration from now (30d) or an ISO date/date-time (UTC unless it says otherwise)."""
    if value is None:
        return None
    now = time.time() if now is None else now
    try:
        return now + seconds(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--expires {value!r}: use a duration (30d, 12h) or a date (2027-01-31)")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
