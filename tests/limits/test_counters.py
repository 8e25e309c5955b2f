"""Counters, prices and limit rules, as units (explicit times, no sleeping)."""

from __future__ import annotations

import asyncio
import calendar
import math

import pytest

from gateway.middleware.limits_rules import (
    budget_of,
    describe,
    estimate_completion_tokens,
    estimate_prompt_tokens,
    limits_of,
    period_end,
    period_span,
    period_id,
)
from gateway.pricing import Price, PriceTable
from gateway.state.counters import Limit, MemoryCounters

RPM = Limit("rl:k:requests:60", 3, 60, "requests", "key 'k'")
TPM = Limit("rl:k:tokens:60", 100, 60, "tokens", "key 'k'")


async def test_sliding_window_allows_up_to_the_limit():
    """Three requests fit in a minute; the fourth is refused with a wait until it fits."""
    c = MemoryCounters()
    for t in (0.0, 1.0, 2.0):
        assert (await c.reserve([(RPM, 1)], t)).allowed
    verdict = await c.reserve([(RPM, 1)], 3.0)
    assert not verdict.allowed and verdict.blocked is RPM
    assert verdict.retry_after == pytest.approx(57.0)


async def test_previous_bucket_decays():
    """Usage of the previous window counts in proportion to its overlap."""
    c = MemoryCounters()
    for t in (50.0, 51.0, 52.0):
        await c.reserve([(RPM, 1)], t)
    assert await c.total(RPM, 60.0) == pytest.approx(3.0)
    assert await c.total(RPM, 90.0) == pytest.approx(1.5)
    assert (await c.reserve([(RPM, 1)], 90.0)).allowed
    assert not (await c.reserve([(RPM, 1)], 90.5)).allowed


async def test_all_or_nothing():
    """When one limit refuses, no other limit of the request is charged."""
    c = MemoryCounters()
    await c.reserve([(TPM, 90)], 0.0)
    verdict = await c.reserve([(RPM, 1), (TPM, 20)], 1.0)
    assert not verdict.allowed and verdict.blocked is TPM
    assert await c.total(RPM, 1.0) == 0


async def test_adjust_settles_and_never_goes_below_zero_for_totals():
    """Settling adds the difference; fixed totals floor at zero."""
    c = MemoryCounters()
    budget = Limit("budget:k:2026-11", 1.0, 0, "usd")
    await c.reserve([(budget, 0.5)], 0.0)
    await c.adjust([(budget, -0.2)], 0.0)
    assert await c.total(budget, 0.0) == pytest.approx(0.3)
    await c.adjust([(budget, -5)], 0.0)
    assert await c.total(budget, 0.0) == 0


async def test_share_divides_every_limit():
    """With share 2 each process enforces half of every limit."""
    c = MemoryCounters(share=2)
    limit = Limit("rl:g:requests:60", 4, 60)
    results = [(await c.reserve([(limit, 1)], 0.0)).allowed for _ in range(3)]
    assert results == [True, True, False]


async def test_concurrent_reservations_cannot_overspend():
    """Many concurrent reservations against one limit: exactly the limit is granted."""
    c = MemoryCounters()
    limit = Limit("rl:x:requests:60", 50, 60)
    verdicts = await asyncio.gather(*(c.reserve([(limit, 1)], 1.0) for _ in range(200)))
    assert sum(v.allowed for v in verdicts) == 50


def test_remaining_and_reset_are_reported():
    """A granted reservation says what is left and when the window resets."""
    c = MemoryCounters()
    verdict = c.reserve_now([(RPM, 1)], 15.0)
    assert verdict.remaining[RPM] == 2 and verdict.resets[RPM] == pytest.approx(45.0)


def test_limits_of_and_describe():
    """Config keys become counter limits with readable descriptions."""
    limits = limits_of({"requests_per_minute": 60, "usd_per_day": 20,
                        "max_parallel_requests": 4}, "key:r", "key 'r'")
    assert [describe(limit) for limit in limits] == [
        "60 requests per minute", "$20 per day", "4 requests in parallel"]
    assert limits[0].key == "rl:key:r:requests:60"


@pytest.mark.parametrize("period, expected", [
    ("daily", "2026-11-26"), ("weekly", "2026-W48"), ("monthly", "2026-11"), ("total", "total")])
def test_period_ids(period, expected):
    """Budget periods are calendar periods in UTC."""
    now = calendar.timegm((2026, 11, 26, 15, 0, 0))
    assert period_id(period, now) == expected


def test_period_end():
    """A monthly budget resets on the first of the next month, UTC."""
    now = calendar.timegm((2026, 12, 31, 23, 0, 0))
    assert period_end("monthly", now) == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert period_end("total", now) is None


@pytest.mark.parametrize("period", ["daily", "weekly", "monthly", "total"])
def test_period_span_holds_one_period_id(period):
    """The limits keep a budget's counter for the span of its period: every second of the span
    has the period's id, the second before it and its end do not."""
    for now in (calendar.timegm((2026, 12, 31, 23, 0, 0)), calendar.timegm((2026, 3, 1, 0, 0, 0)),
                calendar.timegm((2026, 11, 30, 12, 30, 5)) + 0.25):
        start, end = period_span(period, now)
        assert start <= now < end
        if period == "total":
            assert (start, end) == (-math.inf, math.inf)
            continue
        assert period_id(period, start) == period_id(period, end - 0.001) == period_id(period, now)
        assert period_id(period, start - 0.001) != period_id(period, now) != period_id(period, end)
        assert end == period_end(period, now)


def test_cost_of_is_cost():
    """Price.cost_of (the estimate before a call) is the float cost() gives for the same usage."""
    for price in (Price(0.15, 0.6), Price(3.0, 15.0, 0.3), Price(0.1, 0.1)):
        for prompt, completion in ((0, 0), (7, 1024), (123456, 789), (1, 3)):
            usage = {"prompt_tokens": prompt, "completion_tokens": completion}
            assert price.cost_of(prompt, completion) == price.cost(usage)


def test_budget_alert_thresholds():
    """alert_at takes one share or several, kept sorted."""
    assert budget_of({"usd": 5, "alert_at": 0.8}, "k", "k").alert_at == (0.8,)
    assert budget_of({"usd": 5, "alert_at": [0.9, 0.5]}, "k", "k").alert_at == (0.5, 0.9)
    assert budget_of({"usd": 5, "enforcement": "alert"}, "k", "k").block is False


def test_estimates():
    """Prompt tokens are estimated from characters; completion from max_tokens or a default."""
    body = {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50}
    assert estimate_prompt_tokens(body) == 105
    assert estimate_completion_tokens(body, "chat") == 50
    assert estimate_completion_tokens({}, "chat") == 1024
    assert estimate_completion_tokens(body, "embeddings") == 0


def test_prices_shipped_overridden_and_free():
    """The shipped table, overrides by name or type, dated names, and free local types."""
    table = PriceTable({"mine/gpt-4o": {"input": 1, "output": 1}})
    assert table.lookup("mine", "openai", "gpt-4o").input == 1
    assert table.lookup("other", "openai", "gpt-4o").input == 2.5
    assert table.lookup("x", "openai", "gpt-4o-2024-08-06").output == 10
    assert table.lookup("x", "ollama", "llama3").cost({"prompt_tokens": 9}) == 0
    assert table.lookup("x", "openai", "no-such-model") is None


def test_cost_counts_cached_tokens_at_their_price():
    """Cached prompt tokens cost the cached rate."""
    price = PriceTable().lookup("a", "anthropic", "claude-sonnet-4-5")
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 0,
             "prompt_tokens_details": {"cached_tokens": 500_000}}
    assert price.cost(usage) == pytest.approx(0.5 * 3.0 + 0.5 * 0.3)
