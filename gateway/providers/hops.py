"""The hop header: how many gateways a request has passed through.

Every upstream request carries ``x-gateway-hops: N+1``, where N is what the request arrived
with (0 from a client). A request arriving with N at or above MAX_HOPS is refused with 508
Loop Detected, so gateways pointing at each other — or a base_url that is this gateway under
a name the compiler cannot recognise — stop after a few requests instead of multiplying them.

The count of the request being served is a context variable set by the server for the
request's task; the HTTP helpers (http.py) add the header to every upstream call.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Mapping

HOP_HEADER = "x-gateway-hops"
MAX_HOPS = 3  # a request that already passed through this many gateways is refused

_arrived_with: ContextVar[int] = ContextVar("gateway_hops", default=0)
# The W3C traceparent of the upstream call being made (observability.traces on), else None.
_traceparent: ContextVar[str | None] = ContextVar("gateway_traceparent", default=None)


def parse_hops(value: str | None) -> int | None:
    """The hop count a request arrived with (0 without the header), None when malformed."""
    if value is None:
        return 0
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 6 else None


def enter(hops: int) -> None:
    """Record the hop count of the request the current task serves."""
    _arrived_with.set(hops)


def send_traceparent(value: str | None) -> None:
    """The traceparent header the current task's next upstream calls carry (None: none)."""
    _traceparent.set(value)


def with_hop(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` plus the hop header for a request sent on upstream, and the attempt's W3C
    ``traceparent`` when traces are on."""
    out = {**headers, HOP_HEADER: str(_arrived_with.get() + 1)}
    traceparent = _traceparent.get()
    if traceparent is not None:
        out["traceparent"] = traceparent
    return out
