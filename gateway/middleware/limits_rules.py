"""Turns the `limits:`, `budget:` and `teams:` settings of a config into counter limits, once,
at compile time, and estimates what a request will cost before it runs."""

from __future__ import annotations

import calendar
import math
import time
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable, Mapping

from ..hookspecs import TargetRef
from ..pricing import Price, PriceTable
from ..state.counters import Limit
from ..units import number_text

# limits key -> (kind, window in seconds)
LIMIT_KEYS = {
    "requests_per_second": ("requests", 1),
    "requests_per_minute": ("requests", 60),
    "requests_per_hour": ("requests", 3600),
    "requests_per_day": ("requests", 86400),
    "tokens_per_minute": ("tokens", 60),
    "tokens_per_hour": ("tokens", 3600),
    "tokens_per_day": ("tokens", 86400),
    "usd_per_hour": ("usd", 3600),
    "usd_per_day": ("usd", 86400),
    "usd_per_month": ("usd", 30 * 86400),
    "max_parallel_requests": ("parallel", 0),
}
# Key limits that are no counters: the key's storage quota (files/api.py reads it).
NOT_COUNTED = frozenset({"file_storage"})
UNITS = {1: "second", 60: "minute", 3600: "hour", 86400: "day", 30 * 86400: "30 days"}
DEFAULT_COMPLETION_ESTIMATE = 1024  # tokens, when the request sets no max_tokens


def limits_of(spec: Mapping[str, Any] | None, scope_id: str, scope: str) -> tuple[Limit, ...]:
    out = []
    for name, value in (spec or {}).items():
        if name in NOT_COUNTED:
            continue
        kind, window = LIMIT_KEYS[name]
        out.append(Limit(f"rl:{scope_id}:{kind}:{window}", float(value), float(window), kind, scope))
    return tuple(out)


def describe(limit: Limit) -> str:
    """'60 requests per minute', '$20 per day', '5 requests in parallel'."""
    if limit.kind == "parallel":
        return f"{number_text(limit.limit)} requests in parallel"
    amount = number_text(limit.limit)
    amount = f"${amount}" if limit.kind == "usd" else f"{amount} {limit.kind}"
    if limit.window:
        return f"{amount} per {UNITS.get(int(limit.window), f'{limit.window:g}s')}"
    return amount


@dataclass(frozen=True, slots=True)
class Budget:
    scope_id: str  # "key:research", "team:ml"
    scope: str  # "key 'research'"
    usd: float
    period: str  # daily | weekly | monthly | total
    alert_at: tuple[float, ...]
    block: bool

    def limit(self, now: float) -> Limit:
        """The counter of the current period: a fixed total under a key naming the period."""
        return Limit(f"budget:{self.scope_id}:{period_id(self.period, now)}", self.usd, 0.0,
                     "usd", self.scope)


def budget_of(spec: Mapping[str, Any] | None, scope_id: str, scope: str) -> Budget | None:
    if not spec:
        return None
    alert = spec.get("alert_at", ())
    alert = (alert,) if isinstance(alert, (int, float)) else tuple(alert)
    return Budget(scope_id, scope, float(spec["usd"]), spec.get("period", "monthly"),
                  tuple(sorted(float(a) for a in alert)), spec.get("enforcement", "block") == "block")


def period_id(period: str, now: float) -> str:
    t = time.gmtime(now)
    if period == "daily":
        return time.strftime("%Y-%m-%d", t)
    if period == "weekly":
        year, week, _ = date(t.tm_year, t.tm_mon, t.tm_mday).isocalendar()
        return f"{year}-W{week:02d}"
    if period == "monthly":
        return time.strftime("%Y-%m", t)
    return "total"


def period_span(period: str, now: float) -> tuple[float, float]:
    """When the period running at ``now`` began and ends (UTC): its period_id holds from the
    start up to, not including, the end; `total` never ends."""
    end = period_end(period, now)
    if end is None:
        return -math.inf, math.inf
    t = time.gmtime(now)
    day_start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
    if period == "daily":
        return day_start, end
    if period == "weekly":
        return day_start - t.tm_wday * 86400, end
    return calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)), end  # monthly


def period_end(period: str, now: float) -> float | None:
    """When the current period ends (UTC), or None for `total`."""
    t = time.gmtime(now)
    day_start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
    if period == "daily":
        return day_start + 86400
    if period == "weekly":
        return day_start + (7 - t.tm_wday) * 86400
    if period == "monthly":
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        return calendar.timegm((year, month, 1, 0, 0, 0))
    return None


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """A cheap upper-ish estimate: 4 characters a token, plus a few per message."""
    chars, messages = 0, 0
    for message in body.get("messages") or ():
        messages += 1
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    prompt, given = body.get("prompt"), body.get("input")
    if prompt is None and given is None:  # a chat request: messages only
        return chars // 4 + 4 * messages + 1
    for value in (prompt, given):
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, list):
            chars += sum(len(v) if isinstance(v, str) else 4 * len(v) if isinstance(v, list) else 1
                         for v in value)
    return chars // 4 + 4 * messages + 1


def estimate_answer_usage(body: Mapping[str, Any], answer: Mapping[str, Any],
                          endpoint: str) -> dict[str, int] | None:
    """Usage for a whole answer that reports none: the prompt estimated as before the call,
    the completion at 4 characters a token of the text that came back. None for endpoints
    not counted in tokens (images, audio)."""
    if endpoint == "embeddings":
        return {"prompt_tokens": estimate_prompt_tokens(body), "completion_tokens": 0}
    if endpoint not in ("chat", "completions"):
        return None
    chars = 0
    for choice in answer.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        chars += len(text) if isinstance(text, str) else 0
    return {"prompt_tokens": estimate_prompt_tokens(body), "completion_tokens": (chars + 3) // 4}


def estimate_completion_tokens(body: Mapping[str, Any], endpoint: str) -> int:
    if endpoint == "embeddings":
        return 0
    for field in ("max_completion_tokens", "max_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_COMPLETION_ESTIMATE


def target_prices(targets: Mapping[str, Iterable[TargetRef]],
                  pricing: Mapping[str, Any] | None) -> dict[str, Price]:
    """'provider/model' -> Price for every target the compiled routes reach (unknown prices
    left out); ``pricing`` is the config's `pricing:` table."""
    table = PriceTable(pricing)
    prices = {}
    for reachable in targets.values():
        for target in reachable:
            price = table.lookup(target.provider, target.provider_type, target.model)
            if price is not None:
                prices[target.label] = price
    return prices
