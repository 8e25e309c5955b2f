"""gateway.types: every compiled node names its kind and children, and walk() visits a tree."""

from __future__ import annotations

import dataclasses
import inspect
import time

from gateway.config.compiler import compile_bytes
from gateway.graph import nodes, stream_recovery
from gateway.types import NODE_KINDS, SystemClock, walk

CONFIG = """\
version: 1
providers:
  demo: {type: mock}
routes:
  plain:
    target: {provider: demo, model: p}
  every:
    fallback:
      timeout: 30s
      targets:
        - conditional:
            rules:
              - when: {metadata.tier: premium}
                then: {target: {provider: demo, model: c1}}
            default: {route: plain}
        - loadbalance:
            targets:
              - {target: {provider: demo, model: l1}}
              - canary:
                  percent: 10
                  stable: {target: {provider: demo, model: s}}
                  canary: {target: {provider: demo, model: k}}
"""


def compiled():
    return compile_bytes(CONFIG.encode(), "g.yaml", env={})


def describe(node) -> str:
    return f"{node.kind}:{getattr(node, 'model', '')}" if node.kind == "target" else node.kind


def test_walk_visits_every_node_depth_first_in_config_order():
    """walk() yields the root, then each child's subtree in turn, into referenced routes."""
    graph = compiled()
    assert [describe(n) for n in walk(graph.routes["every"].node)] == [
        "deadline", "fallback", "conditional", "target:c1", "route", "target:p",
        "loadbalance", "target:l1", "canary", "target:s", "target:k",
    ]


def test_walk_stop_at_visits_but_does_not_enter():
    """stop_at=("route",) yields a route reference but not the route it points to."""
    graph = compiled()
    kinds = [describe(n) for n in walk(graph.routes["every"].node, stop_at=("route",))]
    assert "route" in kinds and "target:p" not in kinds


def test_node_kinds_names_every_node_class():
    """NODE_KINDS is exactly the set of kinds the node classes declare, one class per kind."""
    classes = [c for module in (nodes, stream_recovery)
               for _, c in inspect.getmembers(module, inspect.isclass)
               if c.__module__ == module.__name__ and dataclasses.is_dataclass(c)
               and hasattr(c, "children")]
    kinds = [c.kind for c in classes]
    assert sorted(kinds) == sorted(NODE_KINDS)


def test_system_clock_reads_the_real_clocks():
    """SystemClock's monotonic() never goes back and time() is the epoch time."""
    clock = SystemClock()
    first = clock.monotonic()
    assert clock.monotonic() >= first
    assert abs(clock.time() - time.time()) < 5
