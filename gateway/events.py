"""Operational events (alerts): what breakers, canaries, budgets, reloads and health checks say
when something needs an operator.

``emit(kind, subject, **details)`` writes one structured ``alert`` log event and hands the
event to every subscribed sink (the server's webhook dispatcher, server/alerts.py). A sink
must only queue: emit runs on the request path (a budget crossed, a circuit opened), so it
never waits on anything. Without a subscriber (the CLI, a test of the graph alone) the event
is only logged.

This module sits at the base of the layers (beside logs.py), so that state/, middleware/ and
server/ can all emit without knowing who listens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .logs import get_logger

log = get_logger("gateway.alerts")

BUDGET_THRESHOLD = "budget_threshold"
CIRCUIT_OPEN = "circuit_open"
CANARY_ROLLED_BACK = "canary_rolled_back"
CONFIG_REJECTED = "config_rejected"
PROVIDER_DOWN = "provider_down"
KINDS = (BUDGET_THRESHOLD, CIRCUIT_OPEN, CANARY_ROLLED_BACK, CONFIG_REJECTED, PROVIDER_DOWN)
# Older names the config still accepts for an event (the schema of version 1 said this one).
ALIASES = {"canary_rollback": CANARY_ROLLED_BACK}


def canonical_kind(name: str) -> str:
    return ALIASES.get(name, name)


@dataclass(frozen=True, slots=True)
class Event:
    """What happened (``kind``), to what (``subject``: a target, a key's budget scope, a
    config file, a provider), when (unix seconds) and the details an operator acts on.
    Details never hold a secret: emitters pass names, numbers and scrubbed text only."""

    kind: str
    subject: str
    at: float
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertWebhook:
    """One `observability.alerts` entry, compiled: where to POST which events."""

    url: str
    kinds: frozenset[str]
    secret: str = ""  # the HMAC key of x-gateway-signature ("" : unsigned)
    cooldown: float = 300.0  # seconds: one delivery per event kind and subject within it
    timeout: float = 5.0  # seconds per delivery attempt
    attempts: int = 4  # deliveries tried on 5xx and connection errors, with backoff

    def wants(self, kind: str) -> bool:
        return kind in self.kinds


Sink = Callable[[Event], None]


class Emitter:
    """The process's event bus: log, then hand to each sink (which only queues)."""

    def __init__(self) -> None:
        self.sinks: list[Sink] = []

    def subscribe(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def unsubscribe(self, sink: Sink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def emit(self, kind: str, subject: str, /, **details: Any) -> Event:
        event = Event(kind, subject, time.time(), details)
        log.warning("alert", kind=kind, subject=subject, **details)
        for sink in tuple(self.sinks):
            try:
                sink(event)
            except Exception:  # a broken sink must never break the code that emitted
                log.exception("alert_sink_failed", kind=kind, subject=subject)
        return event


EMITTER = Emitter()


def emit(kind: str, subject: str, /, **details: Any) -> Event:
    """Report ``kind`` about ``subject`` to the log and to every subscribed sink."""
    return EMITTER.emit(kind, subject, **details)
