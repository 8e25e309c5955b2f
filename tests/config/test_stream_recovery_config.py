"""The route setting stream_recovery: compiled into a wrapper around the route's node that
knows the route's targets, or refused with the position of the mistake."""

from __future__ import annotations

import pytest

from gateway.config.compiler import compile_bytes
from gateway.errors import ConfigErrors
from gateway.graph.explain import explain
from gateway.graph.stream_recovery import RecoveryPolicy, StreamRecoveryNode

BASE = """version: 1
providers:
  a: {type: mock}
  b: {type: mock}
routes:
  other:
    target: {provider: b, model: two}
  chat:
"""


def compiled(route: str):
    return compile_bytes((BASE + route).encode(), "gateway.yaml")


def test_continue_wraps_the_route_node_with_its_policy_and_targets():
    """Targets in config order, route references followed, each once."""
    graph = compiled("""    stream_recovery: {mode: continue, max_restarts: 3, stall_timeout: 1500ms,
                      continue_with: prompt}
    fallback:
      targets:
        - target: {provider: a, model: one}
        - route: other
        - target: {provider: a, model: one}
""")
    node = graph.routes["chat"].node
    assert isinstance(node, StreamRecoveryNode)
    assert node.path == "$.routes.chat.stream_recovery"
    assert node.policy == RecoveryPolicy(max_restarts=3, stall_timeout=1.5,
                                         continue_with="prompt")
    assert [t.label for t in node.targets] == ["a/one", "b/two"]
    assert node.node.kind == "fallback"


def test_defaults_and_off():
    """mode: continue alone means one restart, no stall timeout of its own, auto form; mode:
    off leaves the route as it is."""
    node = compiled("    stream_recovery: {mode: continue}\n"
                    "    target: {provider: a, model: one}\n").routes["chat"].node
    assert node.policy == RecoveryPolicy()
    off = compiled("    stream_recovery: {mode: off}\n"
                   "    target: {provider: a, model: one}\n").routes["chat"].node
    assert off.kind == "target"


@pytest.mark.parametrize("setting, where, message", [
    ("{mode: contine}", (9, 29), "'contine' is not one of"),
    ("{mode: continue, max_restarts: 0}", (9, 53), "0 must be at least 1"),
    ("{mode: continue, stall_timeout: soon}", (9, 54), "stall_timeout"),
    ("{max_restarts: 2}", (9, 22), "mode"),
    ("{mode: continue, continue_with: magic}", (9, 54), "'magic' is not one of"),
])
def test_mistakes_are_reported_where_they_are(setting, where, message):
    with pytest.raises(ConfigErrors) as info:
        compiled(f"    stream_recovery: {setting}\n    target: {{provider: a, model: one}}\n")
    (error,) = info.value.errors
    assert (error.line, error.column) == where, str(error)
    assert message in str(error)


def test_the_dry_run_names_the_recovery():
    graph = compiled("    stream_recovery: {mode: continue, max_restarts: 2}\n"
                     "    target: {provider: a, model: one}\n")
    out = explain(graph, "chat")
    step = out.steps[0]
    assert (step.node, step.path) == ("stream_recovery", "$.routes.chat.stream_recovery")
    assert "up to 2 time(s)" in step.decision
    assert out.decided_by == "$.routes.chat.target"
