"""The per-(route, key, team) plan of the limits (limits_plan.py) answers as the general code
does: the same x-ratelimit-* headers, the same settlement; and the budget spend reaches
/metrics in bulk."""

from __future__ import annotations

import hashlib
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.graph.context import RequestContext
from gateway.graph.graph import KeySpec
from gateway.hookspecs import PluginContext
from gateway.middleware.limits import Limits, RateHeaders, rate_headers
from gateway.middleware.limits_plan import ONE, TOKENS, USD, plan_headers, plan_of
from gateway.middleware.limits_rules import LIMIT_KEYS, budget_of, limits_of
from gateway.providers.base import UpstreamResponse
from gateway.request_stats import RequestStats
from gateway.state.counters import Limit, MemoryCounters
from gateway.state.registry import StateRegistry

from .test_limits_e2e import CONFIG, post

@st.composite
def limit_sets(draw) -> list[Limit]:
    """The limits of up to four scopes (gateway, route, key, team), as a config sets them."""
    names = st.sampled_from(sorted(LIMIT_KEYS))
    scopes = draw(st.lists(st.dictionaries(names, st.integers(1, 10**7), min_size=1, max_size=3),
                           min_size=1, max_size=4))
    return [limit for i, spec in enumerate(scopes)
            for limit in limits_of(spec, f"scope{i}", f"scope {i}")]


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(limits=limit_sets(), used=st.lists(st.integers(0, 10**6), min_size=12, max_size=12),
       now=st.floats(1.7e9, 1.8e9), amount=st.integers(0, 5000))
def test_plan_headers_are_rate_headers(limits, used, now, amount):
    """With one requests limit and one tokens limit at most, the plan's headers are those
    rate_headers finds by searching the verdict; with more of a kind the plan has none."""
    counters = MemoryCounters()
    counters.reserve_now([(limit, spent) for limit, spent in zip(limits, used)], now - 30.0)
    verdict = counters.reserve_now([(limit, amount) for limit in limits], now)
    plan = plan_of(None, limits, [], None)
    several = any(sum(limit.kind == kind for limit in limits) > 1
                  for kind in ("requests", "tokens"))
    assert (plan.shown is None) == several
    if plan.shown is not None:
        assert plan_headers(plan.shown, verdict) == rate_headers(verdict)


def test_plan_sorts_limits_by_what_they_count():
    """Each limit reserves what its kind counts, in the order given; estimates are made only
    when a limit or a blocking budget counts tokens or USD."""
    rpm = Limit("rl:k:requests:60", 5, 60, "requests")
    tpm = Limit("rl:k:tokens:60", 500, 60, "tokens")
    usd = Limit("rl:k:usd:3600", 1, 3600, "usd")
    parallel = Limit("rl:k:parallel:0", 2, 0, "parallel")
    plan = plan_of(None, [rpm, tpm, usd, parallel], [], None)
    assert plan.limits == ((rpm, ONE), (tpm, TOKENS), (usd, USD), (parallel, ONE))
    assert plan.estimates and not plan.idle
    assert plan.settlement(17.0, 0.5, 10.0, 1.0, ()) == [
        (tpm, 7.0), (usd, -0.5), (parallel, -1.0)]
    assert not plan_of(None, [rpm, parallel], [], None).estimates
    tracking = budget_of({"usd": 5, "enforcement": "track"}, "key:k", "key 'k'")
    blocking = budget_of({"usd": 5}, "key:k", "key 'k'")
    assert not plan_of(None, [rpm], [tracking], None).estimates
    assert plan_of(None, [rpm], [blocking], None).estimates
    spent, held = Limit("budget:a", 5, 0, "usd"), Limit("budget:b", 5, 0, "usd")
    budgets = ((blocking, held), (tracking, spent))
    assert plan_of(None, [rpm], [blocking, tracking], None).settlement(
        0.0, 0.75, 0.0, 1.0, budgets) == [(held, -0.25), (spent, 0.75)]
    assert plan_of(None, [], [], None).idle


def test_budget_spend_reaches_prometheus_in_bulk():
    """Budget spend is added up per budget and handed to the prometheus counter by a flush
    (the usage flush) or by a scrape, whichever comes first."""
    stats = RequestStats()
    for usd in (0.25, 0.5, 0.25):
        stats.add_budget_spend("key:a", usd)
    stats.add_budget_spend("team:t", 2.0)

    def spend() -> dict[str, float]:
        return {s.labels["budget"]: s.value for s in stats.budget_spend.collect()[0].samples
                if s.name.endswith("_total")}

    assert spend() == {}
    stats.flush_budget_spend()
    assert spend() == {"key:a": 1.0, "team:t": 2.0}
    stats.add_budget_spend("key:a", 1.0)
    list(stats.collect())  # a scrape
    assert spend() == {"key:a": 2.0, "team:t": 2.0}


async def test_a_key_object_replaced_gets_a_new_plan(tmp_path):
    """Plans are kept per (route, key name, team) and checked against the key object: a key
    the store hands out anew under the same name gets its own limits, not the old plan's."""
    limits = Limits(PluginContext("limits", str(tmp_path / "gateway.yaml"), str(tmp_path),
                                  {"server": {"state": "memory"}}, StateRegistry()))

    def ctx(rpm: int) -> RequestContext:
        key = KeySpec("svc", "0" * 64, None, limits=MappingProxyType({"requests_per_minute": rpm}))
        return RequestContext("chat", {"messages": []}, "chat", key=key, key_name="svc")

    first, again, other = ctx(2), ctx(2), ctx(3)
    assert limits._plan(first) is limits._plan(first)
    assert limits._plan(again) is not limits._plan(first)
    assert limits._plan(other).limits[0][0].limit == 3
    try:
        await limits.on_request(other)
        assert RateHeaders().headers(other, UpstreamResponse(200, b"{}"))[
            "x-ratelimit-limit-requests"] == "3"
    finally:
        await limits.recorder.aclose()


def test_headers_show_the_tightest_of_several_request_limits(gateway_app):
    """The key's 5 requests a minute and the route's 2: the headers show the route's, the
    one with the least left."""
    gw = gateway_app(CONFIG)
    headers = post(gw, "narrow").headers
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "1"


@pytest.mark.parametrize("team", ["research", "other"])
def test_team_from_the_header_picks_its_plan(gateway_app, team):
    """Without a team in the key's metadata, x-gateway-metadata names it: a configured team's
    limits apply, an unknown team's do not."""
    raw = "team-less-key-0123456789"
    text = CONFIG.replace("    metadata: {team: research}\n", "") + f"""  plain:
    key_sha256: {hashlib.sha256(raw.encode()).hexdigest()}
teams:
  research: {{limits: {{requests_per_minute: 7}}}}
"""
    gw = gateway_app(text)
    headers = {"Authorization": f"Bearer {raw}", "x-gateway-metadata": f'{{"team": "{team}"}}'}
    answer = post(gw, "chat", headers)
    assert answer.status_code == 200
    assert answer.headers.get("x-ratelimit-limit-requests") == ("7" if team == "research"
                                                                else None)
