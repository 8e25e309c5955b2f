"""gateway.config.compiler: validated config -> RoutingGraph, semantic errors with positions."""

from __future__ import annotations

import hashlib
import itertools
from types import MappingProxyType

import pytest

from gateway.config.compiler import Runtime, compile_bytes
from gateway.errors import ConfigError, ConfigErrors, UpstreamError
from gateway.graph.context import RequestContext
from gateway.graph.nodes import (
    CanaryNode,
    ConditionalNode,
    FallbackNode,
    LoadBalanceNode,
    RouteRefNode,
    TargetNode,
)
from gateway.graph.policies import StatusMatcher
from gateway.providers.base import Timeouts

H1 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
H2 = hashlib.sha256(b"other").hexdigest()

PROVIDERS = """\
version: 1
providers:
  demo: {type: mock}
  local: {type: mock}
"""  # 4 lines: routes start on line 5


def compile_text(text: str, runtime: Runtime | None = None, **kw):
    return compile_bytes(text.encode(), "g.yaml", runtime=runtime, env={}, **kw)


def compile_errors(text: str) -> tuple[ConfigError, ...]:
    with pytest.raises(ConfigErrors) as info:
        compile_text(text)
    return info.value.errors


def only(errors) -> ConfigError:
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# -- unknown references ---------------------------------------------------------------------


def test_unknown_provider_with_did_you_mean():
    """A target naming an unknown provider is reported at the provider value, with a hint."""
    err = only(compile_errors(PROVIDERS + "routes:\n  a:\n    target: {provider: dmeo, model: m}\n"))
    assert (err.line, err.column, err.path) == (7, 24, "$.routes.a.target.provider")
    assert err.message == "unknown provider 'dmeo'"
    assert err.hint == "did you mean 'demo'?"


def test_unknown_provider_without_close_match():
    """An unknown provider that resembles nothing gets no hint."""
    err = only(compile_errors(PROVIDERS + "routes:\n  a:\n    target: {provider: zzz, model: m}\n"))
    assert err.message == "unknown provider 'zzz'"
    assert err.hint is None


def test_unknown_route_with_did_you_mean():
    """A route reference to an unknown route is reported at the name, with a hint."""
    text = PROVIDERS + (
        "routes:\n  smart:\n    target: {provider: demo, model: m}\n"
        "  alias:\n    route: smrat\n"
    )
    err = only(compile_errors(text))
    assert (err.line, err.column, err.path) == (9, 12, "$.routes.alias.route")
    assert err.message == "unknown route 'smrat'"
    assert err.hint == "did you mean 'smart'?"


def test_unknown_route_deep_in_a_node():
    """An unknown route inside a fallback's targets is reported where it is written."""
    text = PROVIDERS + (
        "routes:\n  a:\n    fallback:\n      targets:\n"
        "        - target: {provider: demo, model: m}\n        - route: nowhere\n"
    )
    err = only(compile_errors(text))
    assert (err.line, err.column, err.path) == (10, 18, "$.routes.a.fallback.targets[1].route")


def test_every_semantic_error_reported_sorted():
    """Several semantic errors come back together, sorted by line."""
    text = PROVIDERS + (
        "routes:\n  b:\n    route: nope\n  a:\n    target: {provider: nope, model: m}\n"
    )
    errors = compile_errors(text)
    assert [(e.line, e.path) for e in errors] == [
        (7, "$.routes.b.route"),
        (9, "$.routes.a.target.provider"),
    ]


# -- cycles ---------------------------------------------------------------------------------


def test_two_route_cycle_reported_once_with_path():
    """a -> b -> a is one error naming the cycle, at the reference that closes it."""
    text = PROVIDERS + "routes:\n  a:\n    route: b\n  b:\n    route: a\n"
    err = only(compile_errors(text))
    assert (err.line, err.column, err.path) == (9, 12, "$.routes.b.route")
    assert err.message == "routes reference each other in a cycle: a -> b -> a"


def test_self_reference_is_a_cycle():
    """A route that names itself is a cycle a -> a."""
    err = only(compile_errors(PROVIDERS + "routes:\n  a:\n    route: a\n"))
    assert err.message == "routes reference each other in a cycle: a -> a"
    assert (err.line, err.column) == (7, 12)


def test_cycle_through_nested_nodes():
    """A cycle that passes through fallback and conditional nodes is found."""
    text = PROVIDERS + (
        "routes:\n"
        "  a:\n    fallback:\n      targets:\n        - route: b\n"
        "  b:\n    conditional:\n      rules:\n"
        "        - when: {metadata.x: 1}\n          then: {route: c}\n"
        "  c:\n    route: a\n"
    )
    err = only(compile_errors(text))
    assert err.message.endswith("a -> b -> c -> a")
    assert err.path == "$.routes.c.route"


def test_cycle_reached_from_outside_reported_once():
    """A route that leads into a cycle does not add a second cycle error."""
    text = PROVIDERS + (
        "routes:\n  entry:\n    route: a\n  a:\n    route: b\n  b:\n    route: a\n"
    )
    err = only(compile_errors(text))
    assert err.message == "routes reference each other in a cycle: a -> b -> a"


def test_shared_route_is_not_a_cycle():
    """Two routes referencing the same third route (a diamond) compile."""
    text = PROVIDERS + (
        "routes:\n  base:\n    target: {provider: demo, model: m}\n"
        "  x:\n    route: base\n  y:\n    fallback:\n      targets: [{route: base}, {route: x}]\n"
    )
    graph = compile_text(text)
    assert set(graph.routes) == {"base", "x", "y"}


# -- conditions -----------------------------------------------------------------------------


def test_bad_regex_in_condition():
    """An invalid $regex is a compile error at the pattern."""
    text = PROVIDERS + (
        "routes:\n  a:\n    conditional:\n      rules:\n"
        "        - when: {metadata.x: {$regex: '(['}}\n"
        "          then: {target: {provider: demo, model: m}}\n"
    )
    err = only(compile_errors(text))
    assert (err.line, err.column) == (9, 39)
    assert err.path == '$.routes.a.conditional.rules[0].when["metadata.x"]["$regex"]'
    assert err.message.startswith("invalid regular expression '(['")


def test_bad_regex_nested_in_combinators():
    """A bad regex under $and/$not is located by its full path."""
    text = PROVIDERS + (
        "routes:\n  a:\n    conditional:\n      rules:\n"
        "        - when: {metadata.x: 1}\n          then: {target: {provider: demo, model: m}}\n"
        "        - when:\n            $and:\n              - route: a\n"
        "              - $not: {params.user: {$regex: 'a)'}}\n"
        "          then: {target: {provider: demo, model: m}}\n"
    )
    err = only(compile_errors(text))
    assert err.path == (
        '$.routes.a.conditional.rules[1].when["$and"][1]["$not"]["params.user"]["$regex"]'
    )
    assert err.line == 14


# -- keys -----------------------------------------------------------------------------------


ONE_ROUTE = PROVIDERS + "routes:\n  smart:\n    target: {provider: demo, model: m}\n"  # to line 7


def test_duplicate_key_sha256():
    """Two keys with the same hash: the second is reported, naming the first."""
    text = ONE_ROUTE + f"keys:\n  one: {{key_sha256: {H1}}}\n  two: {{key_sha256: {H1}}}\n"
    err = only(compile_errors(text))
    assert (err.line, err.column, err.path) == (10, 21, "$.keys.two.key_sha256")
    assert err.message == "key 'two' has the same key_sha256 as key 'one'"


def test_unknown_route_in_key_routes():
    """An unknown route in a key's routes list is reported at the item, with a hint."""
    text = ONE_ROUTE + f"keys:\n  k:\n    key_sha256: {H1}\n    routes:\n      - smart\n      - smrt\n"
    err = only(compile_errors(text))
    assert (err.line, err.column, err.path) == (13, 9, "$.keys.k.routes[1]")
    assert err.message == "unknown route 'smrt'"
    assert err.hint == "did you mean 'smart'?"


def test_key_routes_star_means_all():
    """routes: ['*'] allows every route; an explicit list allows only those."""
    text = ONE_ROUTE + (
        f"keys:\n  all: {{key_sha256: {H1}, routes: ['*']}}\n"
        f"  some: {{key_sha256: {H2}, routes: [smart], metadata: {{team: r}}}}\n"
    )
    graph = compile_text(text)
    everything, some = graph.keys_by_hash[H1], graph.keys_by_hash[H2]
    assert everything.name == "all" and everything.routes is None
    assert some.routes == frozenset({"smart"})
    assert some.allows("smart") and not some.allows("other")
    assert dict(some.metadata) == {"team": "r"}


def test_bad_key_expiry_is_an_error():
    """A key whose expires is not ISO 8601 is refused at the value."""
    text = ONE_ROUTE + f"keys:\n  k:\n    key_sha256: {H1}\n    expires: next tuesday\n"
    err = only(compile_errors(text))
    assert (err.line, err.column, err.path) == (11, 14, "$.keys.k.expires")


def test_unknown_semantic_cache_route():
    """cache.semantic.route must name a route."""
    text = ONE_ROUTE + "cache:\n  mode: semantic\n  semantic: {route: smarts}\n"
    err = only(compile_errors(text))
    assert err.path == "$.cache.semantic.route"
    assert err.hint == "did you mean 'smart'?"


# -- build limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["weighted", "round_robin", "least_busy", "latency"])
def test_every_loadbalance_algorithm_compiles(algorithm):
    """Every algorithm the schema names is available."""
    text = PROVIDERS + (
        f"routes:\n  a:\n    loadbalance:\n      algorithm: {algorithm}\n"
        "      targets: [{target: {provider: demo, model: m}}]\n"
    )
    assert compile_text(text).routes["a"].node.algorithm == algorithm


def test_all_zero_weights_are_a_compile_error():
    """A balancer whose every target is drained could send nowhere: refused at its targets."""
    text = PROVIDERS + (
        "routes:\n  a:\n    loadbalance:\n      targets:\n"
        "        - {weight: 0, target: {provider: demo, model: m}}\n"
        "        - {weight: 0, target: {provider: local, model: m}}\n"
    )
    err = only(compile_errors(text))
    assert (err.line, err.column, err.path) == (8, 7, "$.routes.a.loadbalance.targets")
    assert err.message == "loadbalance requires at least one target with weight > 0"
    assert str(err).startswith("g.yaml:8:7: ")


def test_zero_weight_compiles_to_a_zero_share():
    """weight: 0 beside a positive weight compiles; its share is 0."""
    text = PROVIDERS + (
        "routes:\n  a:\n    loadbalance:\n      targets:\n"
        "        - {weight: 0, target: {provider: demo, model: m}}\n"
        "        - {weight: 2, target: {provider: local, model: m}}\n"
    )
    assert compile_text(text).routes["a"].node.probabilities() == (0.0, 1.0)


def test_route_on_failed_provider_adds_no_second_error():
    """A target on a provider that is itself in error does not repeat the error."""
    text = (
        "version: 1\nproviders:\n  claude: {type: no-such-type}\n"
        "routes:\n  a:\n    target: {provider: claude, model: m}\n"
    )
    errors = compile_errors(text)
    assert [e.path for e in errors] == ["$.providers.claude.type"]


# -- timeouts -------------------------------------------------------------------------------


def timeouts_of(text: str, route: str) -> Timeouts:
    return compile_text(text).routes[route].node.timeouts


def test_builtin_timeout_defaults():
    """Without any timeout config: total 60s, connect 10s, first_byte and idle = total."""
    t = timeouts_of(ONE_ROUTE, "smart")
    assert t == Timeouts(connect=10.0, first_byte=60.0, idle=60.0, total=60.0)


def test_defaults_timeout_inherited():
    """defaults.timeout applies to a target that sets none."""
    text = "version: 1\ndefaults:\n  timeout: 30s\n" + ONE_ROUTE.removeprefix("version: 1\n")
    assert timeouts_of(text, "smart") == Timeouts(10.0, 30.0, 30.0, 30.0)


def test_provider_timeout_overrides_defaults():
    """A provider's timeout overrides defaults for its targets only."""
    text = (
        "version: 1\ndefaults:\n  timeout: 30s\nproviders:\n"
        "  slow: {type: mock, timeout: 2m}\n  fast: {type: mock}\n"
        "routes:\n  s: {target: {provider: slow, model: m}}\n  f: {target: {provider: fast, model: m}}\n"
    )
    graph = compile_text(text)
    assert graph.routes["s"].node.timeouts.total == 120.0
    assert graph.routes["f"].node.timeouts.total == 30.0


def test_target_timeout_overrides_provider():
    """A target's timeout wins over its provider's and defaults."""
    text = (
        "version: 1\ndefaults:\n  timeout: 30s\nproviders:\n  p: {type: mock, timeout: 20s}\n"
        "routes:\n  a: {target: {provider: p, model: m, timeout: 500ms}}\n"
    )
    assert timeouts_of(text, "a") == Timeouts(0.5, 0.5, 0.5, 0.5)


def test_split_timeouts_merge_field_by_field():
    """Split timeouts merge per field across defaults, provider and target."""
    text = (
        "version: 1\ndefaults:\n  timeout: {connect: 2s, total: 30s}\n"
        "providers:\n  p: {type: mock, timeout: {first_byte: 5s}}\n"
        "routes:\n  a: {target: {provider: p, model: m, timeout: {idle: 3s}}}\n"
    )
    assert timeouts_of(text, "a") == Timeouts(connect=2.0, first_byte=5.0, idle=3.0, total=30.0)


def test_plain_timeout_over_split_keeps_connect_and_idle():
    """A plain duration sets total (and first_byte) but keeps inherited connect and idle."""
    text = (
        "version: 1\ndefaults:\n  timeout: {connect: 2s, first_byte: 4s, idle: 7s, total: 30s}\n"
        "providers:\n  p: {type: mock}\n"
        "routes:\n  a: {target: {provider: p, model: m, timeout: 10s}}\n"
    )
    assert timeouts_of(text, "a") == Timeouts(connect=2.0, first_byte=10.0, idle=7.0, total=10.0)


def test_connect_and_first_byte_never_exceed_total():
    """connect and first_byte are capped by total."""
    text = (
        "version: 1\ndefaults:\n  timeout: {connect: 20s, first_byte: 40s}\n"
        "providers:\n  p: {type: mock}\nroutes:\n  a: {target: {provider: p, model: m, timeout: {total: 5s}}}\n"
    )
    t = timeouts_of(text, "a")
    assert (t.connect, t.first_byte, t.total) == (5.0, 5.0, 5.0)


def test_numeric_timeout_is_seconds():
    """A bare number is seconds."""
    text = "version: 1\nproviders:\n  p: {type: mock}\nroutes:\n  a: {target: {provider: p, model: m, timeout: 1.5}}\n"
    assert timeouts_of(text, "a").total == 1.5


# -- retry ----------------------------------------------------------------------------------


def test_builtin_retry_defaults():
    """Without retry config: 2 attempts on 429/5xx/timeout/connection, exponential 500ms..8s."""
    r = compile_text(ONE_ROUTE).routes["smart"].node.retry
    assert r.attempts == 2
    assert r.on == StatusMatcher(frozenset({429, 500, 502, 503, 504, 529}), frozenset({"timeout", "connection"}))
    assert (r.backoff, r.base, r.max, r.jitter, r.respect_retry_after) == (
        "exponential", 0.5, 8.0, True, True,
    )


def test_retry_inherits_defaults_field_by_field():
    """A target's retry overrides only the fields it sets; the rest come from defaults."""
    text = (
        "version: 1\ndefaults:\n  retry: {attempts: 4, base: 100ms, on_status: [503, timeout]}\n"
        "providers:\n  p: {type: mock}\n"
        "routes:\n  a: {target: {provider: p, model: m}}\n"
        "  b: {target: {provider: p, model: m, retry: {attempts: 1, jitter: false, backoff: constant}}}\n"
    )
    graph = compile_text(text)
    a, b = graph.routes["a"].node.retry, graph.routes["b"].node.retry
    assert (a.attempts, a.base, a.jitter) == (4, 0.1, True)
    assert a.on == StatusMatcher(frozenset({503}), frozenset({"timeout"}))
    assert (b.attempts, b.base, b.jitter, b.backoff) == (1, 0.1, False, "constant")
    assert b.on == a.on


def test_target_retry_on_status_replaces_defaults_list():
    """on_status in a target replaces the inherited list instead of extending it."""
    text = (
        "version: 1\ndefaults:\n  retry: {on_status: [503]}\nproviders:\n  p: {type: mock}\n"
        "routes:\n  a: {target: {provider: p, model: m, retry: {on_status: [429]}}}\n"
    )
    r = compile_text(text).routes["a"].node.retry
    assert r.on == StatusMatcher(frozenset({429}), frozenset())


# -- node shapes ----------------------------------------------------------------------------


SHAPES = PROVIDERS + """\
routes:
  plain:
    target:
      provider: demo
      model: m1
      override_params: {temperature: 0, response_format: {type: json_object}, stop: [a, b]}
  alias:
    route: plain
  fb:
    fallback:
      on_status: [429, context_window]
      targets:
        - target: {provider: demo, model: m2}
        - route: plain
  lb:
    loadbalance:
      targets:
        - {weight: 3, target: {provider: demo, model: m3}}
        - {route: plain}
  rr:
    loadbalance:
      algorithm: round_robin
      targets: [{target: {provider: demo, model: a}}, {target: {provider: local, model: b}}]
  cond:
    conditional:
      rules:
        - when: {metadata.tier: premium}
          then: {route: fb}
      default: {target: {provider: local, model: m4}}
  nodefault:
    conditional:
      rules:
        - when: {route: x}
          then: {route: plain}
  can:
    canary:
      percent: 12.5
      sticky: key.name
      stable: {route: plain}
      canary: {target: {provider: local, model: m5}}
"""


@pytest.fixture(scope="module")
def shapes():
    return compile_text(SHAPES)


def test_target_shape(shapes):
    """A target compiles to a TargetNode with its provider, model and path."""
    node = shapes.routes["plain"].node
    assert isinstance(node, TargetNode)
    assert node.provider is shapes.providers["demo"]
    assert (node.model, node.label, node.path) == ("m1", "demo/m1", "$.routes.plain.target")


def test_route_shape(shapes):
    """route: compiles to a RouteRefNode sharing the referenced route's node."""
    node = shapes.routes["alias"].node
    assert isinstance(node, RouteRefNode)
    assert node.route == "plain"
    assert node.node is shapes.routes["plain"].node


def test_fallback_shape(shapes):
    """fallback compiles to its children in order and its on_status matcher."""
    node = shapes.routes["fb"].node
    assert isinstance(node, FallbackNode)
    assert [type(c) for c in node.nodes] == [TargetNode, RouteRefNode]
    assert node.nodes[0].model == "m2"
    assert node.on == StatusMatcher(frozenset({429}), frozenset({"context_window"}))
    assert node.path == "$.routes.fb.fallback"


def test_fallback_default_on_status():
    """A fallback without on_status moves on for 429, 5xx, timeout and connection failures."""
    text = PROVIDERS + "routes:\n  f:\n    fallback:\n      targets: [{target: {provider: demo, model: m}}]\n"
    node = compile_text(text).routes["f"].node
    assert node.on.describe() == [429, 500, 502, 503, 504, 529, "connection", "timeout"]


def test_loadbalance_shape(shapes):
    """loadbalance compiles weights (default 1), running sums and the algorithm."""
    node = shapes.routes["lb"].node
    assert isinstance(node, LoadBalanceNode)
    assert node.algorithm == "weighted"
    assert node.weights == (3.0, 1.0)
    assert node.cumulative == (3.0, 4.0)
    assert node.probabilities() == (0.75, 0.25)
    assert node.nodes[1].node is shapes.routes["plain"].node


def test_round_robin_shape(shapes):
    """round_robin keeps its algorithm and a cursor handle."""
    node = shapes.routes["rr"].node
    assert node.algorithm == "round_robin"
    assert [c.label for c in node.nodes] == ["demo/a", "local/b"]
    assert isinstance(node.cursor, itertools.count)


def test_conditional_shape(shapes):
    """conditional compiles rules (with predicate) and default."""
    node = shapes.routes["cond"].node
    assert isinstance(node, ConditionalNode)
    assert node.route == "cond"
    assert len(node.rules) == 1
    assert node.rules[0].path == "$.routes.cond.conditional.rules[0]"
    assert isinstance(node.rules[0].then, RouteRefNode) and node.rules[0].then.route == "fb"
    assert isinstance(node.default, TargetNode) and node.default.model == "m4"


def test_conditional_without_default(shapes):
    """A conditional without default has default None."""
    assert shapes.routes["nodefault"].node.default is None


def test_canary_shape(shapes):
    """canary compiles percent, both arms and the sticky field getter."""
    node = shapes.routes["can"].node
    assert isinstance(node, CanaryNode)
    assert node.percent == 12.5
    assert isinstance(node.stable, RouteRefNode) and node.stable.route == "plain"
    assert isinstance(node.canary, TargetNode) and node.canary.label == "local/m5"
    assert callable(node.sticky)


def test_route_records(shapes):
    """Each Route carries its name and JSON path."""
    route = shapes.routes["fb"]
    assert (route.name, route.path) == ("fb", "$.routes.fb")


def test_graph_metadata():
    """The graph records version, sha256 of the bytes and the file path."""
    graph = compile_text(ONE_ROUTE, version=7)
    assert graph.version == 7
    assert graph.sha256 == hashlib.sha256(ONE_ROUTE.encode()).hexdigest()
    assert graph.path == "g.yaml"
    assert graph.text == ONE_ROUTE


def test_graph_routes_are_read_only(shapes):
    """The compiled graph's routes mapping cannot be changed."""
    with pytest.raises(TypeError):
        shapes.routes["new"] = shapes.routes["plain"]  # type: ignore[index]


# -- override_params ------------------------------------------------------------------------


def test_override_params_frozen(shapes):
    """override_params is a read-only mapping, nested mappings too, lists become tuples."""
    params = shapes.routes["plain"].node.override_params
    assert isinstance(params, MappingProxyType)
    assert isinstance(params["response_format"], MappingProxyType)
    assert params["stop"] == ("a", "b")
    with pytest.raises(TypeError):
        params["temperature"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        params["response_format"]["type"] = "text"  # type: ignore[index]


def test_nodes_are_frozen(shapes):
    """Compiled nodes are immutable."""
    node = shapes.routes["plain"].node
    with pytest.raises(AttributeError):
        node.model = "other"  # type: ignore[misc]


# -- runtime state --------------------------------------------------------------------------


LB = PROVIDERS + """\
routes:
  lb:
    loadbalance:
      algorithm: round_robin
      targets:
        - target: {provider: demo, model: a}
        - target: {provider: demo, model: b}
  nested:
    fallback:
      targets:
        - loadbalance:
            targets: [{target: {provider: demo, model: c}}]
"""


def test_state_keys_are_route_and_path():
    """Each loadbalance node's state key is ('loadbalance', route, path)."""
    graph = compile_text(LB)
    assert {k for k in graph.state_keys if k[0] == "loadbalance"} == {
        ("loadbalance", "lb", "$.routes.lb.loadbalance"),
        ("loadbalance", "nested", "$.routes.nested.fallback.targets[0].loadbalance"),
    }


def test_target_state_is_keyed_by_identity():
    """Targets are keyed by provider, base_url and model; providers' health by name."""
    graph = compile_text(LB)
    targets = {k for k in graph.state_keys if k[0] == "target"}
    assert targets == {("target", "demo", "mock://", m) for m in ("a", "b", "c")}
    assert ("health", "demo") in graph.state_keys


def test_state_survives_recompile_with_same_runtime():
    """Compiling the same config twice with one Runtime hands back the same cursor object."""
    runtime = Runtime()
    first = compile_text(LB, runtime)
    second = compile_text(LB, runtime)
    assert first is not second
    assert second.routes["lb"].node.cursor is first.routes["lb"].node.cursor
    assert second.routes["nested"].node.nodes[0].cursor is first.routes["nested"].node.nodes[0].cursor


async def test_round_robin_position_continues_after_recompile():
    """After a reload, round robin continues where the old graph left off."""
    runtime = Runtime()
    first = compile_text(LB, runtime).routes["lb"].node
    ctx = RequestContext("chat", {}, "lb")
    assert first.pick(ctx).model == "a"
    second = compile_text(LB, runtime).routes["lb"].node
    assert second.pick(ctx).model == "b"


def test_state_survives_unrelated_edit():
    """Editing another route keeps the cursor of an unchanged loadbalance route."""
    runtime = Runtime()
    first = compile_text(LB, runtime)
    edited = compile_text(LB + "  extra:\n    target: {provider: demo, model: z}\n", runtime)
    assert edited.routes["lb"].node.cursor is first.routes["lb"].node.cursor


def test_fresh_runtime_gives_fresh_state():
    """A different Runtime gets its own cursor."""
    a = compile_text(LB, Runtime()).routes["lb"].node.cursor
    b = compile_text(LB, Runtime()).routes["lb"].node.cursor
    assert a is not b


def test_renamed_route_gets_new_state():
    """State is keyed by route name: a renamed route starts fresh."""
    runtime = Runtime()
    first = compile_text(LB, runtime)
    renamed = compile_text(LB.replace("  lb:\n", "  lb2:\n"), runtime)
    assert renamed.routes["lb2"].node.cursor is not first.routes["lb"].node.cursor


def test_retain_only_drops_unused_keys():
    """Runtime.state.retain_only keeps the given keys and drops the others."""
    runtime = Runtime()
    graph = compile_text(LB, runtime)
    assert len(runtime.state) == len(graph.state_keys)
    keep = ("loadbalance", "lb", "$.routes.lb.loadbalance")
    drop = ("loadbalance", "nested", "$.routes.nested.fallback.targets[0].loadbalance")
    runtime.state.retain_only({keep})
    assert keep in runtime.state and drop not in runtime.state
    assert len(runtime.state) == 1
    again = compile_text(LB, runtime)
    assert again.routes["lb"].node.cursor is graph.routes["lb"].node.cursor
    assert again.routes["nested"].node.nodes[0].cursor is not graph.routes["nested"].node.nodes[0].cursor


def test_retain_only_with_graph_state_keys_keeps_everything_used():
    """Retaining a graph's own state_keys drops only what an older graph used."""
    runtime = Runtime()
    compile_text(LB, runtime)
    smaller = compile_text(PROVIDERS + "routes:\n  lb:\n    loadbalance:\n      algorithm: round_robin\n"
                           "      targets:\n        - target: {provider: demo, model: a}\n"
                           "        - target: {provider: demo, model: b}\n", runtime)
    runtime.state.retain_only(smaller.state_keys)
    assert len(runtime.state) == len(smaller.state_keys)
    assert ("loadbalance", "lb", "$.routes.lb.loadbalance") in runtime.state
    assert ("target", "demo", "mock://", "a") in runtime.state
    assert ("target", "demo", "mock://", "c") not in runtime.state


def test_failed_compile_raises_config_errors_not_partial_graph():
    """A config with one bad route is rejected whole."""
    with pytest.raises(ConfigErrors):
        compile_text(LB + "  bad:\n    route: nowhere\n")


def test_upstream_error_classes_in_on_status_are_matched():
    """A compiled on_status list with a class matches errors of that class, whatever the status."""
    node = compile_text(SHAPES).routes["fb"].node
    assert node.on.matches(UpstreamError(400, "context_window", "too long"))
    assert not node.on.matches(UpstreamError(400, "client", "bad"))
    assert node.on.matches(UpstreamError(429, "rate_limit", "slow down"))


def test_inactive_settings_are_warnings_with_positions(monkeypatch):
    """Settings the schema accepts but this build ignores are reported, never silently dropped
    (none is today: the test names one)."""
    from gateway.config import compiler
    from gateway.config.compiler import compile_bytes

    monkeypatch.setattr(compiler, "INACTIVE", (("observability", "alerts"),))
    text = (
        "version: 1\n"
        "providers: {d: {type: mock}}\n"
        "routes:\n"
        "  a:\n"
        "    target: {provider: d, model: m}\n"
        "    cache: {mode: semantic, semantic: {route: a}}\n"
        "cache: {mode: simple}\n"
        "observability: {alerts: [{on: [circuit_open], webhook: 'http://127.0.0.1:9/x'}]}\n"
    )
    graph = compile_bytes(text.encode(), "w.yaml")
    found = sorted((w.line, w.column, w.path, w.severity) for w in graph.warnings)
    assert found == [(8, 17, "$.observability.alerts", "warning")]
    assert all("no effect" in w.message for w in graph.warnings)


def test_alert_webhooks_compile_with_canonical_event_names():
    """observability.alerts is active: no warning; the old name canary_rollback means
    canary_rolled_back; durations parsed, defaults filled in."""
    from gateway.config.compiler import compile_bytes

    text = (
        "version: 1\n"
        "providers: {d: {type: mock}}\n"
        "routes: {a: {target: {provider: d, model: m}}}\n"
        "observability:\n"
        "  alerts:\n"
        "    - {on: [circuit_open, canary_rollback], webhook: 'http://127.0.0.1:9/x', secret: s3,\n"
        "       cooldown: 1m}\n"
        "    - {on: [provider_down], webhook: 'http://127.0.0.1:9/y'}\n"
    )
    graph = compile_bytes(text.encode(), "w.yaml")
    assert graph.warnings == ()
    first, second = graph.alerts
    assert first.kinds == {"circuit_open", "canary_rolled_back"}
    assert (first.url, first.secret, first.cooldown) == ("http://127.0.0.1:9/x", "s3", 60.0)
    assert (second.secret, second.cooldown, second.timeout, second.attempts) == ("", 300.0, 5.0, 4)


def test_unknown_provider_type_suggests_the_closest():
    """A misspelled provider type is a compile error with a suggestion (plugins may add types)."""
    from gateway.config.compiler import compile_bytes
    from gateway.errors import ConfigErrors

    with pytest.raises(ConfigErrors) as info:
        compile_bytes(b"version: 1\nproviders:\n  p: {type: opnai}\n", "t.yaml")
    (err,) = info.value.errors
    assert (err.line, err.column, err.path) == (3, 13, "$.providers.p.type")
    assert err.message == "unknown provider type 'opnai'" and err.hint == "did you mean 'openai'?"


def test_cache_ttl_out_of_range_is_an_error_with_its_position():
    """A cache ttl must be from 60s to 90d, top level or on a route."""
    from gateway.config.compiler import compile_bytes
    from gateway.errors import ConfigErrors

    text = (
        "version: 1\n"
        "providers: {d: {type: mock}}\n"
        "routes:\n"
        "  a:\n"
        "    target: {provider: d, model: m}\n"
        "    cache: {ttl: 91d}\n"
        "cache: {mode: simple, ttl: 59s}\n"
    )
    try:
        compile_bytes(text.encode(), "w.yaml")
    except ConfigErrors as exc:
        found = sorted((e.line, e.path) for e in exc.errors)
    else:
        raise AssertionError("compiled")
    assert found == [(6, "$.routes.a.cache.ttl"), (7, "$.cache.ttl")]
