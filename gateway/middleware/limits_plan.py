"""What the limits do per request for one (route, key, team), worked out once: a Plan.

Every request of a limited key would otherwise gather the limits of the gateway, its route, its
key and its team into lists, compare each limit's kind to pick the amount it reserves and later
settles, and search the verdict for the tightest limit of each kind for the x-ratelimit-*
headers. None of that depends on the request itself, only on (route, key, team), so Limits
(limits.py) keeps one Plan per such triple and a request only fills in its amounts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from ..pricing import Price
from ..state.counters import Limit, Verdict
from ..units import number_text
from .limits_rules import Budget

# What a limit reserves, as an index into a request's (1.0, tokens, usd): requests and
# parallel limits count the request once, token limits its estimated tokens, USD ones its cost.
ONE, TOKENS, USD = 0, 1, 2
_AMOUNT_OF_KIND = {"requests": ONE, "parallel": ONE, "tokens": TOKENS, "usd": USD}

# A header-bearing limit: (limit, its x-ratelimit-limit-* name, its value written out,
# the x-ratelimit-remaining-* name, the x-ratelimit-reset-* name).
ShownLimit = tuple[Limit, str, str, str, str]


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """The limits and budgets of one (route, key, team), in the forms the request path uses."""

    key: Any  # the KeySpec it was made for: a key of the store may be replaced by a new object
    limits: tuple[tuple[Limit, int], ...]  # gateway's, route's, key's, team's: (limit, ONE|TOKENS|USD)
    budgets: tuple[Budget, ...]  # the key's, then the team's
    price: Price | None  # of the route's dearest target: what the USD estimate uses
    estimates: bool  # a token or USD limit, or a blocking budget: the request's amounts are estimated
    token_limits: tuple[Limit, ...]  # settled with the tokens used
    usd_limits: tuple[Limit, ...]  # settled with the USD spent
    parallel_limits: tuple[Limit, ...]  # released when the request ends
    # The x-ratelimit-* of the only requests limit and the only tokens limit; None when a kind
    # has several limits: then rate_headers searches the verdict for the tightest.
    shown: tuple[ShownLimit, ...] | None
    alerts: bool  # a budget alerts at thresholds: settling reads its counter
    # The budgets' counters of the periods running now (the one mutable part, renewed by
    # Limits when a period ends): [from, until, ((budget, its counter), ...), (the counter of
    # each blocking budget, ...)]. Never due before the first request: it starts empty.
    period: list[Any]
    idle: bool  # nothing to reserve or count

    def settlement(self, tokens: float, usd: float, reserved_tokens: float, reserved_usd: float,
                   budgets: Sequence[tuple[Budget, Limit]]) -> list[tuple[Limit, float]]:
        """What the counters are adjusted by once a request that reserved ``reserved_tokens``
        and ``reserved_usd`` used ``tokens`` and cost ``usd``: token and USD limits and
        blocking budgets by the difference, other budgets by the cost; parallel requests
        released. ``budgets``: each with its counter of the period the request ran in."""
        # Loops, not comprehensions: each list has one or two items, per request.
        adjust = []
        for limit in self.token_limits:
            adjust.append((limit, tokens - reserved_tokens))
        for limit in self.usd_limits:
            adjust.append((limit, usd - reserved_usd))
        for limit in self.parallel_limits:
            adjust.append((limit, -1.0))
        for budget, limit in budgets:
            adjust.append((limit, usd - reserved_usd if budget.block else usd))
        return adjust


def plan_of(key: Any, limits: list[Limit], budgets: list[Budget], price: Price | None) -> Plan:
    """The plan of ``limits`` and ``budgets`` (Limits._rules, in their order: a refusal names
    the first limit that refuses) for ``key``, with the route's ``price``."""
    kinds = [limit.kind for limit in limits]
    return Plan(
        key=key,
        limits=tuple((limit, _AMOUNT_OF_KIND[limit.kind]) for limit in limits),
        budgets=tuple(budgets),
        price=price,
        estimates=("tokens" in kinds or "usd" in kinds or any(b.block for b in budgets)),
        token_limits=tuple(limit for limit in limits if limit.kind == "tokens"),
        usd_limits=tuple(limit for limit in limits if limit.kind == "usd"),
        parallel_limits=tuple(limit for limit in limits if limit.kind == "parallel"),
        shown=_shown(limits),
        alerts=any(b.alert_at for b in budgets),
        period=[math.inf, -math.inf, (), ()],
        idle=not limits and not budgets,
    )


def _shown(limits: list[Limit]) -> tuple[ShownLimit, ...] | None:
    shown = []
    for kind in ("requests", "tokens"):
        of_kind = [limit for limit in limits if limit.kind == kind]
        if len(of_kind) > 1:
            return None
        if of_kind:
            limit = of_kind[0]
            shown.append((limit, f"x-ratelimit-limit-{kind}", number_text(limit.limit),
                          f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}"))
    return tuple(shown)


def plan_headers(shown: tuple[ShownLimit, ...], verdict: Verdict) -> dict[str, str]:
    """rate_headers(verdict) (limits.py) when each kind has one limit at most: the same
    headers in the same order, without searching for the tightest."""
    headers: dict[str, str] = {}
    remaining, resets = verdict.remaining, verdict.resets
    for limit, limit_name, limit_text, remaining_name, reset_name in shown:
        left = remaining.get(limit)
        if left is None:  # a verdict without it (none reserved): as rate_headers, no headers
            continue
        headers[limit_name] = limit_text
        headers[remaining_name] = str(math.floor(left)) if left > 0 else "0"
        whole = math.ceil(resets.get(limit, 0.0))
        headers[reset_name] = _DURATIONS.get(whole) or duration_text(whole)
    return headers


_DURATIONS: dict[int, str] = {}  # whole seconds -> their text: resets repeat across requests


def duration_text(seconds: float) -> str:
    """OpenAI's style, rounded up to whole seconds: 1s, 6m0s, 1h2m3s."""
    whole = max(0, math.ceil(seconds))
    text = _DURATIONS.get(whole)
    if text is None:
        if len(_DURATIONS) > 4096:
            _DURATIONS.clear()
        text = _DURATIONS[whole] = _written(whole)
    return text


def _written(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
