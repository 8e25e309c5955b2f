"""The cache never answers a request with what another branch of its route would have said:
the request fields a route's conditions read (metadata, key, parameters the key otherwise
ignores) are part of the cache key."""

from __future__ import annotations

from .test_cache_e2e import digest

GOLD, BASIC = "cache-routing-gold-1", "cache-routing-basic-2"


CONFIG = f"""
version: 1
providers:
  demo: {{type: mock}}
cache: {{mode: simple, ttl: 10m}}
routes:
  chat:
    conditional:
      rules:
        - when: {{metadata.tier: premium}}
          then: {{target: {{provider: demo, model: big}}}}
        - when: {{params.user: {{$regex: "^vip-"}}}}
          then: {{target: {{provider: demo, model: vip}}}}
      default: {{target: {{provider: demo, model: small}}}}
  plain: {{target: {{provider: demo, model: p}}}}
keys:
  gold: {{key_sha256: {digest(GOLD)}, metadata: {{tier: premium}}}}
  basic: {{key_sha256: {digest(BASIC)}}}
"""


def ask(gw, key: str, model: str = "chat", headers=None, **extra):
    return gw.post("/v1/chat/completions",
                   headers={"Authorization": f"Bearer {key}", **(headers or {})},
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}], **extra})


def test_each_branch_of_a_conditional_route_gets_its_own_answers(gateway_app):
    gw = gateway_app(CONFIG)
    gold = ask(gw, GOLD)
    assert (gold.headers["x-gateway-cache"], gold.headers["x-gateway-target"]) == ("miss", "demo/big")
    basic = ask(gw, BASIC)  # same body, same namespace, the default branch
    assert (basic.headers["x-gateway-cache"], basic.headers["x-gateway-target"]) == (
        "miss", "demo/small")
    assert ask(gw, BASIC).headers["x-gateway-cache"] == "hit"
    again = ask(gw, GOLD)
    assert (again.headers["x-gateway-cache"], again.json()) == ("hit", gold.json())
    # the tier from the header instead of the key: the same branch, the same answer
    header = ask(gw, BASIC, headers={"x-gateway-metadata": '{"tier": "premium"}'})
    assert (header.headers["x-gateway-cache"], header.json()) == ("hit", gold.json())


def test_a_parameter_the_key_ignores_counts_when_a_condition_reads_it(gateway_app):
    """`user` does not change an answer, so it is no part of the cache key; but here it picks
    the branch."""
    gw = gateway_app(CONFIG)
    vip = ask(gw, BASIC, user="vip-1")
    assert (vip.headers["x-gateway-cache"], vip.headers["x-gateway-target"]) == ("miss", "demo/vip")
    other = ask(gw, BASIC, user="someone")
    assert (other.headers["x-gateway-cache"], other.headers["x-gateway-target"]) == (
        "miss", "demo/small")
    assert ask(gw, BASIC, user="vip-1").headers["x-gateway-cache"] == "hit"


def test_routes_without_conditions_keep_sharing_answers_across_keys(gateway_app):
    """What the keys' metadata says does not split a route that does not read it."""
    gw = gateway_app(CONFIG)
    assert ask(gw, GOLD, model="plain").headers["x-gateway-cache"] == "miss"
    assert ask(gw, BASIC, model="plain").headers["x-gateway-cache"] == "hit"
