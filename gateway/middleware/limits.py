"""Built-in rate limits and budgets: global (`limits:`), per route (`limits:` beside a route),
per key (`keys.NAME.limits` / `budget`, or set by `gateway keys create`) and per team
(`teams.NAME`, matched on metadata.team).

Before the call the request's expected amounts are reserved — one request, an estimate of its
tokens and of its cost at the route's dearest target — atomically across every applicable
limit, so concurrent requests cannot overspend. After the call the reservation is settled with
the usage the provider reported (released on failure), usage is recorded, and budget
thresholds crossed emit one alert each. Streams report their usage too (stream_usage.py); only
when a provider reports nothing is the usage estimated, and the row says so. 429 answers carry
Retry-After and OpenAI's x-ratelimit-* headers; successful answers, streamed ones included, carry
them too (RateHeaders).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence


from ..errors import GatewayError
from ..events import BUDGET_THRESHOLD, emit
from ..graph.context import RequestContext, Usage, header_metadata
from ..hookspecs import PluginContext
from ..pricing import BATCH_PRICE, Price
from ..providers.base import UpstreamResponse
from ..providers.anthropic_response import usage as anthropic_usage
from ..request_stats import STATS
from ..state.counters import Limit, MemoryCounters, Verdict
from ..store.tasks import spawn
from ..units import number_text
from .limits_plan import Plan, duration_text, plan_headers, plan_of
from .limits_rules import (
    Budget,
    budget_of,
    describe,
    estimate_answer_usage,
    estimate_completion_tokens,
    estimate_prompt_tokens,
    limits_of,
    period_end,
    period_span,
    target_prices,
)
from .state_backend import counters_for
from .stream_usage import StreamUsage
from .usage import UsageRecorder, usage_recorder

NOTHING_RESERVED = Verdict(True)
STREAMS_WITH_USAGE = frozenset({"chat", "completions"})  # endpoints whose streams report usage
MAX_PLANS = 4096  # (route, key, team) plans kept; past that the cache starts again


@dataclass(slots=True)
class Reservation:
    plan: Plan | None  # None: nothing limits the request (its usage is still recorded)
    items: list[tuple[Limit, float]]
    tokens: float
    usd: float
    budgets: Sequence[tuple[Budget, Limit]]  # with the counter of the period running now
    verdict: Verdict
    stream: StreamUsage | None = None  # reads (and maybe hides) a stream's usage chunk
    settled: bool = False


class Limits:
    def __init__(self, context: PluginContext):
        config = context.gateway_config
        self.counters = counters_for(context)
        self.recorder: UsageRecorder = usage_recorder(context)
        self.global_limits = limits_of(config.get("limits"), "global", "the gateway")
        self.route_limits = {name: limits_of(spec.get("limits"), f"route:{name}", f"route '{name}'")
                             for name, spec in (config.get("routes") or {}).items()}
        self.teams = {
            name: (limits_of(spec.get("limits"), f"team:{name}", f"team '{name}'"),
                   budget_of(spec.get("budget"), f"team:{name}", f"team '{name}'"))
            for name, spec in (config.get("teams") or {}).items()
        }
        # The targets each compiled route reaches (plugins are set up after the routes).
        self.prices = target_prices(context.targets, config.get("pricing"))
        self.route_price = {
            name: _dearest([self.prices.get(target.label) for target in targets])
            for name, targets in context.targets.items()
        }
        self._key_rules: dict[tuple[str, int], tuple[tuple[Limit, ...], Budget | None]] = {}
        # (route, key name, team) -> its Plan (limits_plan.py), checked against the key object.
        self._plans: dict[tuple[str, str | None, str | None], Plan] = {}
        # Each budget's counter of the period running now, until that period ends:
        # id(budget) -> (budget, start, end, limit).
        self._periods: dict[int, tuple[Budget, float, float, Limit]] = {}
        # In-process counters answer at once: called directly, not through a coroutine.
        kind = type(self.counters)
        self.direct = (issubclass(kind, MemoryCounters) and kind.reserve is MemoryCounters.reserve
                       and kind.adjust is MemoryCounters.adjust)
        # Whether anything but a key's own settings can limit a request: else the common
        # request without a limited key costs one check here.
        self.static_rules = bool(self.global_limits or any(self.route_limits.values()) or self.teams)

    # -- before -----------------------------------------------------------------------------

    async def on_request(self, ctx: RequestContext) -> None:
        stream = ask_for_stream_usage(ctx) if ctx.stream else None
        key = ctx.key
        if not self.static_rules and (key is None or (not key.limits and not key.budget)):
            ctx.keep_state(Reservation(None, [], 0, 0, (), NOTHING_RESERVED, stream))  # usage only
            return
        plan = self._plan(ctx)
        if plan.idle:
            ctx.keep_state(Reservation(None, [], 0, 0, (), NOTHING_RESERVED, stream))
            return
        now = time.time()
        tokens, usd = 0, 0.0
        if plan.estimates:
            prompt = estimate_prompt_tokens(ctx.body)
            completion = estimate_completion_tokens(ctx.body, ctx.endpoint)
            tokens = prompt + completion
            price = plan.price
            usd = price.cost_of(prompt, completion) if price else 0.0
        amounts = (1.0, tokens, usd)  # indexed by each limit's ONE, TOKENS or USD
        items = [(limit, amounts[amount]) for limit, amount in plan.limits]
        budget_limits: Sequence[tuple[Budget, Limit]] = ()
        if plan.budgets:
            period = plan.period
            if not period[0] <= now < period[1]:
                self._renew_period(plan, now)
            budget_limits = period[2]
            for limit in period[3]:  # the blocking budgets reserve the estimate
                items.append((limit, usd))
        if self.direct:
            verdict = self.counters.reserve_now(items, now)  # type: ignore[attr-defined]
        else:
            verdict = await self.counters.reserve(items, now)
        if not verdict.allowed:
            raise self._refusal(verdict, budget_limits, now, ctx.route)
        ctx.keep_state(Reservation(plan, items, tokens, usd, budget_limits, verdict, stream))

    def _plan(self, ctx: RequestContext) -> Plan:
        """The Plan of the request's route, key and team, made at its first request (and again
        when the key store hands out a new object for the key: its limits may have changed)."""
        key = ctx.key
        team = None
        if self.teams:
            metadata = ctx.metadata
            named = metadata.get("team") if isinstance(metadata, dict) else None
            team = named if isinstance(named, str) and named in self.teams else None
        cache_key = (ctx.route, None if key is None else key.name, team)
        plan = self._plans.get(cache_key)
        if plan is None or plan.key is not key:
            limits, budgets = self._rules(key, {"team": team}, ctx.route)
            plan = plan_of(key, limits, budgets, self.route_price.get(ctx.route))
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            self._plans[cache_key] = plan
        return plan

    def _rules(self, key: Any, metadata: Any, route: str | None
               ) -> tuple[list[Limit], list[Budget]]:
        """The limits and budgets of the gateway, ``route`` (None: none), ``key`` and the
        team ``metadata`` names."""
        limits = list(self.global_limits)
        if route is not None:
            limits += self.route_limits.get(route, ())
        budgets: list[Budget] = []
        if key is not None:
            key_limits, key_budget = self._key(key)
            limits += key_limits
            if key_budget:
                budgets.append(key_budget)
        if not self.teams:
            return limits, budgets
        team = metadata.get("team") if isinstance(metadata, dict) else None
        if isinstance(team, str) and team in self.teams:
            team_limits, team_budget = self.teams[team]
            limits += team_limits
            if team_budget:
                budgets.append(team_budget)
        return limits, budgets

    def _renew_period(self, plan: Plan, now: float) -> None:
        """``plan.period`` for the periods running at ``now`` (a budget's period ended, or
        this is the plan's first request)."""
        spans = [period_span(b.period, now) for b in plan.budgets]
        limits = tuple((b, self._period_limit(b, now)) for b in plan.budgets)
        plan.period[:] = [max(start for start, _ in spans), min(end for _, end in spans), limits,
                          tuple(limit for b, limit in limits if b.block)]

    def _period_limit(self, budget: Budget, now: float) -> Limit:
        """``budget.limit(now)``, made once per period."""
        found = self._periods.get(id(budget))
        if found is not None and found[0] is budget and found[1] <= now < found[2]:
            return found[3]
        start, end = period_span(budget.period, now)
        limit = budget.limit(now)
        self._periods[id(budget)] = (budget, start, end, limit)
        return limit

    def _key(self, key: Any) -> tuple[tuple[Limit, ...], Budget | None]:
        cache_key = (key.name, id(key))
        rules = self._key_rules.get(cache_key)
        if rules is None:
            scope = f"key '{key.name}'"
            try:
                rules = (limits_of(key.limits, f"key:{key.name}", scope),
                         budget_of(key.budget, f"key:{key.name}", scope))
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                # A key stored unchecked by an older version: refuse it, never a 500.
                raise GatewayError(
                    403, f"key '{key.name}' has limits or a budget the gateway cannot read "
                    f"({exc}): revoke it and create it again", type="permission_error",
                    code="invalid_key_record") from None
            self._key_rules[cache_key] = rules
        return rules

    def _refusal(self, verdict: Verdict, budgets: Sequence[tuple[Budget, Limit]], now: float,
                 route: str) -> GatewayError:
        limit = verdict.blocked
        assert limit is not None  # only a refused verdict comes here, and it names its limit
        budget = next((b for b, bl in budgets if bl is limit), None)
        if budget is not None:
            end = period_end(budget.period, now)
            wait = max(1, math.ceil(end - now)) if end else None
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(end)) if end else "never"
            message = (f"budget exceeded: {budget.scope} has spent its {budget.period} budget of "
                       f"${number_text(budget.usd)} (resets {when})")
            code, reason = "budget_exceeded", "budget"
        else:
            wait = max(1, math.ceil(verdict.retry_after)) if math.isfinite(verdict.retry_after) else None
            message = (f"rate limit exceeded: {limit.scope} allows {describe(limit)}"
                       + (f"; retry in {wait}s" if wait else ""))
            code, reason = "rate_limit_exceeded", "rate_limit"
        STATS.child(STATS.limited, route, reason).inc()
        headers = rate_headers(verdict)
        if wait:
            headers["Retry-After"] = str(wait)
        return GatewayError(429, message, type="rate_limit_error", code=code, headers=headers)

    async def count_call(self, key: Any, headers: Mapping[str, str], what: str
                         ) -> dict[str, str]:
        """One request against the request limits (per second to per day) of the gateway,
        ``key`` and its team, for a call the gateway answers without the graph (``what``:
        /v1/files, /v1/batches, /v1/fine_tuning/jobs, a stored response); 429
        ``rate_limit_exceeded`` as for a chat request when one is spent. The x-ratelimit-*
        headers to answer with. Token, USD and parallel limits, budgets and route limits
        are not touched."""
        if not self.static_rules and (key is None or not key.limits):
            return {}
        metadata: Mapping[str, Any] = {}
        if self.teams:  # the team as for a request: the key's metadata wins over the header's
            metadata = header_metadata(headers)
            if key is not None and key.metadata:
                metadata = {**metadata, **key.metadata}
        limits, _ = self._rules(key, metadata, None)
        items = [(limit, 1.0) for limit in limits if limit.kind == "requests"]
        if not items:
            return {}
        now = time.time()
        verdict = await self.counters.reserve(items, now)
        if not verdict.allowed:
            raise self._refusal(verdict, [], now, what)
        return rate_headers(verdict)

    # -- after -------------------------------------------------------------------------------

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> UpstreamResponse:
        reservation = ctx.state_for(Reservation)
        if reservation is None:
            return response
        usage, estimated = response.usage, False
        if usage is None:
            data = response.json()
            if isinstance(data, dict):
                usage = estimate_answer_usage(ctx.body, data, ctx.endpoint)
                estimated = usage is not None
        if not reservation.settled:
            measured = self._measure(ctx, reservation, response.target, usage, estimated)
            if self.direct and (reservation.plan is None or not reservation.plan.alerts):
                # In-process counters and no alert to check: settled without a coroutine.
                adjust, now = self._settle(ctx, reservation, measured)
                if adjust:
                    self.counters.adjust_now(adjust, now)  # type: ignore[attr-defined]
            else:
                await self._apply(ctx, reservation, measured)
        return response

    def on_chunk(self, ctx: RequestContext, chunk: bytes) -> bytes:
        reservation = ctx.state_for(Reservation)
        if reservation is None or reservation.stream is None:
            return chunk
        return reservation.stream.feed(chunk)

    def on_stream_end(self, ctx: RequestContext) -> bytes:
        reservation = ctx.state_for(Reservation)
        if reservation is None or reservation.settled:
            return b""
        stream, tail, usage, estimated = reservation.stream, b"", None, False
        if stream is not None:
            tail, usage = stream.end(), stream.usage
            if usage is None:  # the provider reported nothing: estimate, and say so
                usage = {"prompt_tokens": estimate_prompt_tokens(ctx.body),
                         "completion_tokens": stream.events}
                estimated = True
        measured = self._measure(ctx, reservation, ctx.target, usage, estimated)
        spawn(self._apply(ctx, reservation, measured), "limits:settle")
        return tail

    async def on_error(self, ctx: RequestContext, error: BaseException) -> None:
        reservation = ctx.state_for(Reservation)
        if reservation is not None and not reservation.settled:
            reservation.settled = True
            refund = [(limit, -amount) for limit, amount in reservation.items
                      if limit.kind != "requests" and amount]
            if refund:
                await self.counters.adjust(refund, time.time())

    def _measure(self, ctx: RequestContext, reservation: Reservation, target: str,
                 usage: dict | None, estimated: bool) -> tuple[str, Usage]:
        """What the request used and cost, kept in ``ctx.usage`` at once (a stream's record is
        built as it ends, before the counters are adjusted)."""
        reservation.settled = True
        usage = usage if isinstance(usage, dict) else {}
        if "input_tokens" in usage and "prompt_tokens" not in usage:
            # A native answer of the /v1/messages or /v1/responses front door.
            usage = responses_usage(usage) if "input_tokens_details" in usage \
                else anthropic_usage(usage)
        if ctx.cached:  # answered by the response cache: free (the cache counts what it saved)
            usage, target, estimated = {}, "cache", False
        price = self.prices.get(target)
        cost = price.cost(usage) if price is not None else 0.0
        ctx.usage = Usage(int(usage.get("prompt_tokens") or 0),
                          int(usage.get("completion_tokens") or 0), cost, estimated)
        return target, ctx.usage

    async def _apply(self, ctx: RequestContext, reservation: Reservation,
                     measured: tuple[str, Usage]) -> None:
        adjust, now = self._settle(ctx, reservation, measured)
        if adjust:
            if self.direct:
                self.counters.adjust_now(adjust, now)  # type: ignore[attr-defined]
            else:
                await self.counters.adjust(adjust, now)
        for budget, limit in reservation.budgets:
            if budget.alert_at:
                await self._alerts(budget, limit, now)

    def _settle(self, ctx: RequestContext, reservation: Reservation,
                measured: tuple[str, Usage]) -> tuple[list[tuple[Limit, float]], float]:
        """Record what the request used (usage rows, budget spend) and say what the counters
        are adjusted by, and when: (adjustments, now)."""
        target, used = measured
        now = time.time()
        usd = used.cost_usd
        plan, budgets = reservation.plan, reservation.budgets
        adjust = [] if plan is None else plan.settlement(
            float(used.tokens_in + used.tokens_out), usd, reservation.tokens, reservation.usd,
            budgets)
        if usd:
            for budget, _ in budgets:
                STATS.add_budget_spend(budget.scope_id, usd)
        self.recorder.record(now, ctx.key_name, ctx.route, target, used.tokens_in,
                             used.tokens_out, usd, used.estimated)
        return adjust, now

    async def _alerts(self, budget: Budget, limit: Limit, now: float) -> None:
        spent = await self.counters.total(limit, now)
        for share in budget.alert_at:
            if spent >= share * budget.usd:
                marker = Limit(f"alert:{limit.key}:{share:g}", 1.0, 0.0, "alert")
                if (await self.counters.reserve([(marker, 1.0)], now)).allowed:  # once only
                    emit(BUDGET_THRESHOLD, budget.scope, period=budget.period, threshold=share,
                         spent_usd=round(spent, 6), budget_usd=budget.usd)


    # -- work sent by someone else (provider-native batches, files/batch_usage.py) ----------

    def batch_cost(self, target: str, usage: Mapping[str, Any]) -> float:
        """USD of ``usage`` at ``target`` at the batch price (pricing.BATCH_PRICE)."""
        price = self.prices.get(target)
        return price.cost(usage) * BATCH_PRICE if price else 0.0

    def _spend_rules(self, key: Any, routes: Iterable[str]) -> tuple[list[tuple[Limit, str]],
                                                                    list[Budget]]:
        """The USD limits (each with the route it counts, "" for all) and the budgets that
        apply to a key's spend on ``routes``: the gateway's, each route's, the key's and its
        team's (from the key's metadata). Request, token and parallel limits do not apply."""
        limits = [(limit, "") for limit in self.global_limits]
        limits += [(limit, route) for route in routes
                   for limit in self.route_limits.get(route, ())]
        budgets: list[Budget] = []
        if key is not None:
            key_limits, key_budget = self._key(key)
            limits += [(limit, "") for limit in key_limits]
            budgets += [key_budget] if key_budget else []
            team = key.metadata.get("team") if isinstance(key.metadata, Mapping) else None
            if isinstance(team, str) and team in self.teams:
                team_limits, team_budget = self.teams[team]
                limits += [(limit, "") for limit in team_limits]
                budgets += [team_budget] if team_budget else []
        return [(limit, route) for limit, route in limits if limit.kind == "usd"], budgets

    async def admit_batch(self, key: Any, estimates: Mapping[str, float],
                          what: str = "") -> None:
        """Refuse (429, as a request) a batch whose estimated USD per route does not fit in
        the USD limits and blocking budgets that apply; nothing stays reserved. ``what``: the
        refusal's last words for work that is not a batch (a fine-tuning job)."""
        now = time.time()
        rules, budgets = self._spend_rules(key, estimates)
        total = sum(estimates.values())
        # A tiny amount still refuses a key whose budget is spent when no price is known.
        items = [(limit, max(estimates[route] if route else total, 1e-6))
                 for limit, route in rules]
        budget_limits = [(b, b.limit(now)) for b in budgets]
        items += [(limit, max(total, 1e-6)) for b, limit in budget_limits if b.block]
        if not items:
            return
        verdict = await self.counters.reserve(items, now)
        if not verdict.allowed:
            refusal = self._refusal(verdict, budget_limits, now, next(iter(estimates), ""))
            refusal.message = (f"{refusal.message}: {what}" if what else
                               f"{refusal.message}: this batch's estimated cost is "
                               f"${total:.4f} (at the batch price; docs/files.md)")
            raise refusal
        await self.counters.adjust([(limit, -amount) for limit, amount in items], now)

    async def charge_batch(self, key: Any, key_name: str | None,
                           totals: Mapping[tuple[str, str], Any], batch_id: str) -> bool:
        """Count what the batch ``batch_id`` run elsewhere used, per (route, target)
        (``Totals``): usage rows (under ``key_name``), the USD limits and budgets that apply,
        their alerts. Once per batch: False (nothing counted) when it was counted before."""
        now = time.time()
        by_route: dict[str, float] = {}
        for (route, _), used in totals.items():
            by_route[route] = by_route.get(route, 0.0) + used.usd
        if not await self.recorder.record_batch(batch_id, now, key_name, [
                (route, target, used.usage(), used.usd, used.requests)
                for (route, target), used in totals.items()]):
            return False
        total = sum(by_route.values())
        if not total:
            return True
        rules, budgets = self._spend_rules(key, by_route)
        adjust = [(limit, by_route[route] if route else total) for limit, route in rules]
        budget_limits = [(b, b.limit(now)) for b in budgets]
        adjust += [(limit, total) for _, limit in budget_limits]
        for budget in budgets:
            STATS.add_budget_spend(budget.scope_id, total)
        self.recorder.schedule()  # its flush hands the spend to prometheus within a second
        if adjust:
            await self.counters.adjust(adjust, now)
        for budget, limit in budget_limits:
            await self._alerts(budget, limit, now)
        return True


class RateHeaders:
    """OpenAI's x-ratelimit-* headers on every answer a limit applied to, whole or streamed
    (hookspecs.ResponseHeaders)."""

    def headers(self, ctx: RequestContext, response: UpstreamResponse) -> dict[str, str] | None:
        reservation = ctx.state_for(Reservation)
        if reservation is None or not reservation.items:
            return None
        shown = reservation.plan.shown if reservation.plan is not None else None
        if shown is None:
            return rate_headers(reservation.verdict)
        return plan_headers(shown, reservation.verdict)


def responses_usage(usage: dict) -> dict:
    """OpenAI usage of a Responses answer's: its input_tokens include the cached ones."""
    details = usage.get("input_tokens_details")
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    prompt, completion = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}}


def _dearest(prices: list[Price | None]) -> Price | None:
    known = [p for p in prices if p is not None]
    if not known:
        return None
    return Price(max(p.input for p in known), max(p.output for p in known))


def ask_for_stream_usage(ctx: RequestContext) -> StreamUsage | None:
    """For a streamed chat or completions request: ask the upstream to report the usage
    (stream_options.include_usage), and return what reads it from the stream, hiding it from
    a client that did not ask. None for anything else."""
    if not ctx.stream or ctx.endpoint not in STREAMS_WITH_USAGE:
        return None
    options = ctx.body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return StreamUsage(strip=False)  # the client's own (odd) value goes through untouched
    if options and options.get("include_usage"):
        return StreamUsage(strip=False)
    ctx.body = {**ctx.body, "stream_options": {**(options or {}), "include_usage": True}}
    return StreamUsage(strip=True)


def rate_headers(verdict: Verdict) -> dict[str, str]:
    """OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens}, from the tightest limit
    of each kind."""
    requests = tokens = None  # (remaining, limit): the first with the least remaining
    for limit, remaining in verdict.remaining.items():
        kind = limit.kind
        if kind == "requests":
            if requests is None or remaining < requests[0]:
                requests = (remaining, limit)
        elif kind == "tokens":
            if tokens is None or remaining < tokens[0]:
                tokens = (remaining, limit)
    headers: dict[str, str] = {}
    resets = verdict.resets
    for (limit_name, remaining_name, reset_name), tightest in ((_REQUESTS, requests),
                                                               (_TOKENS, tokens)):
        if tightest is not None:
            remaining, limit = tightest
            headers[limit_name] = number_text(limit.limit)
            headers[remaining_name] = str(max(0, math.floor(remaining)))
            headers[reset_name] = duration_text(resets.get(limit, 0.0))
    return headers


_REQUESTS, _TOKENS = ((f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}",
                       f"x-ratelimit-reset-{kind}") for kind in ("requests", "tokens"))
