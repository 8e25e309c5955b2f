"""A dry run through a compiled graph: what would happen to one request, without sending it.

``explain(graph, model, metadata=..., params=..., key=...)`` walks the route's compiled nodes
(by node kind, nothing executed, no runtime state touched: round-robin cursors do not
move, canary and breaker counters do not count) and reports:

- whether the gateway would refuse the request first (404 unknown model, 401 key, 403 route
  not allowed for the key, 400 no conditional rule matches) and why;
- each decision on the way (which rule matched, which canary arm a sticky value lands on,
  which load-balancing algorithm picks);
- the alternatives: with probability p, these targets are tried in this order (fallbacks
  concatenate, load balancers and canaries split the probability);
- the policies that apply: middleware, and per target retries, timeouts, breaker, overrides.

Node types this module does not know (a plugin's strategy) are reported as opaque steps.
"""

from __future__ import annotations

import difflib
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..keys.store import KeyStore, StoredKey, keystore_path
from ..units import duration_text
from ..types import Node
from .conditions import is_missing
from .context import RequestContext
from .graph import KeySpec, RoutingGraph
from .nodes import (
    CanaryNode,
    ConditionalNode,
    DeadlineNode,
    FallbackNode,
    LoadBalanceNode,
    RouteRefNode,
    TargetNode,
)
from .stream_recovery import StreamRecoveryNode

MAX_ALTERNATIVES = 256  # beyond this, the least likely alternatives are summed up as "other"


@dataclass(frozen=True)
class Step:
    path: str
    node: str  # a kind of types.NODE_KINDS, or a plugin node's type
    decision: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "node": self.node, "decision": self.decision}


@dataclass(frozen=True)
class Alternative:
    """With ``probability``, these targets are tried in this order (or the request fails)."""

    probability: float
    targets: tuple[str, ...]  # provider/model labels
    paths: tuple[str, ...]  # the TargetNode path of each
    route: str  # the last route reached through route references
    error: str | None = None  # e.g. "400 no_route_matched" when a branch ends without a target

    def as_dict(self) -> dict[str, Any]:
        return {"probability": round(self.probability, 6), "targets": list(self.targets),
                "route": self.route, "error": self.error}


@dataclass
class Explanation:
    model: str
    route: str | None
    status: int  # 200 when the request would be routed, else what the gateway answers
    error: str | None = None
    key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    decided_by: str | None = None
    steps: list[Step] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> policies of that target
    middleware: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> bool:
        return self.status != 200

    @property
    def final_route(self) -> str | None:
        """The route that decides when every alternative ends in the same one."""
        routes = {a.route for a in self.alternatives}
        return routes.pop() if len(routes) == 1 else (self.route if not routes else None)

    @property
    def deterministic(self) -> bool:
        return len(self.alternatives) == 1

    def first_targets(self) -> dict[str, float]:
        """Probability that each target is tried first."""
        out: dict[str, float] = {}
        for alt in self.alternatives:
            if alt.targets:
                out[alt.targets[0]] = out.get(alt.targets[0], 0.0) + alt.probability
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "route": self.route, "status": self.status, "error": self.error,
            "key": self.key, "metadata": self.metadata, "params": self.params,
            "decided_by": self.decided_by, "final_route": self.final_route,
            "steps": [s.as_dict() for s in self.steps],
            "first_targets": [{"target": t, "probability": round(p, 6)}
                              for t, p in self.first_targets().items()],
            "alternatives": [a.as_dict() for a in self.alternatives],
            "targets": [{"path": p, **info} for p, info in self.targets.items()],
            "middleware": self.middleware, "notes": self.notes,
        }


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def explain(graph: RoutingGraph, model: str, *, metadata: Mapping[str, Any] | None = None,
            params: Mapping[str, Any] | None = None, key: str | None = None,
            endpoint: str = "chat", now: float | None = None) -> Explanation:
    """What the gateway would do with a request for ``model`` (see the module docstring)."""
    out = Explanation(model=model, route=None, status=200, key=key,
                      metadata=dict(metadata or {}), params=dict(params or {}))
    out.middleware = [getattr(m, "name", type(m).__name__) for m in graph.middleware]
    route = graph.routes.get(model)
    if route is None:
        close = difflib.get_close_matches(model, list(graph.routes), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        out.status, out.error = 404, f"model_not_found: no route '{model}'{hint}"
        return out
    out.route = model
    try:
        spec = _authenticate(graph, key, model, now if now is not None else time.time())
    except _Refused as refused:
        out.status, out.error = refused.status, refused.message
        return out
    merged = dict(out.metadata)
    if spec is not None:
        merged.update(spec.metadata)  # the key's metadata wins, as in the server
    elif key is not None:
        out.notes.append("the config declares no keys: --key is ignored")
    ctx = RequestContext(endpoint=endpoint, body={**out.params, "model": model}, route=model,
                         metadata=merged, key_name=spec.name if spec else None,
                         rng=random.Random(0), node=route.node)
    walker = _Walker(ctx, out)
    alternatives = walker.walk(route.node, (model,))
    out.alternatives = _merge(alternatives)
    out.decided_by = walker.decider or _unwrapped(route.node).path
    if all(a.error for a in out.alternatives):
        first = out.alternatives[0].error or "400 no_route_matched"
        status, _, message = first.partition(" ")
        out.status, out.error = int(status), message
    budget = route.retry_budget
    if budget is not None:
        out.notes.append(f"retry budget: retries may add {budget.ratio:.0%} to the route's "
                         f"requests over {duration_text(budget.window)} "
                         f"(at least {budget.min_retries})")
    return out


def _authenticate(graph: RoutingGraph, key: str | None, route: str, now: float) -> KeySpec | None:
    """As the server decides: keys declared in the config and keys of the key store (created
    with `gateway keys create` or POST /admin/keys; a revoked one still keeps keys required)."""
    stored = _stored_keys(graph)
    declared = list(graph.keys_by_hash.values())
    if not declared and not stored:
        return None
    active = declared + [KeySpec.of_stored(k) for k in stored if k.revoked_at is None]
    names = sorted(spec.name for spec in active)
    if key is None:
        raise _Refused(401, "missing_api_key: this config requires a key; pass --key NAME "
                            f"(one of: {', '.join(names) or 'none active'})")
    spec = next((s for s in active if s.name == key), None)
    if spec is None:
        revoked = any(k.name == key for k in stored)
        reason = f"key '{key}' was revoked" if revoked else f"no key named '{key}'"
        raise _Refused(401, f"invalid_api_key: {reason} (keys: {', '.join(names) or 'none'})")
    if spec.expires_at is not None and now >= spec.expires_at:
        raise _Refused(401, f"expired_api_key: API key '{key}' has expired")
    if not spec.allows(route):
        raise _Refused(403, f"route_not_allowed: key '{key}' may not use route '{route}'")
    return spec


def _stored_keys(graph: RoutingGraph) -> list[StoredKey]:
    """The key store's keys (revoked ones too); none when no key store exists yet."""
    path = keystore_path(graph.settings.data_dir)
    return KeyStore(path).list()  # creates nothing when there is no key store


Via = tuple[str, ...]  # the routes a walk went through, the current one last
_Alt = tuple[float, tuple[str, ...], tuple[str, ...], str, "str | None"]  # probability, labels,
# paths, route, error


class _Walker:
    def __init__(self, ctx: RequestContext, out: Explanation):
        self.ctx = ctx
        self.out = out
        self.decider: str | None = None
        self.probabilistic = False  # a random choice was passed: later decisions are per branch

    def step(self, node: Any, kind: str, decision: str) -> None:
        self.out.steps.append(Step(node.path, kind, decision))

    def decide(self, path: str) -> None:
        if not self.probabilistic:
            self.decider = path

    def walk(self, node: Node, via: Via) -> list[_Alt]:
        simulate = self.by_kind.get(node.kind)
        if simulate is not None:
            return simulate(self, node, via)
        kind = type(node).__name__
        self.step(node, kind, "a node type the dry run does not know (from a plugin?): its "
                              "choice is not simulated")
        return [(1.0, (f"<{kind}>",), (node.path,), via[-1], None)]

    def _target(self, node: TargetNode, via: Via) -> list[_Alt]:
        self.out.targets.setdefault(node.path, _target_policies(node))
        return [(1.0, (node.label,), (node.path,), via[-1], None)]

    def _route(self, node: RouteRefNode, via: Via) -> list[_Alt]:
        self.step(node, "route", f"uses route '{node.route}'")
        return self.walk(node.node, via + (node.route,))

    def _deadline(self, node: DeadlineNode, via: Via) -> list[_Alt]:
        """A strategy node's own timeout."""
        self.step(node, "deadline", f"the subtree must answer within {duration_text(node.seconds)}")
        return self.walk(node.node, via)

    def _stream_recovery(self, node: StreamRecoveryNode, via: Via) -> list[_Alt]:
        """A route whose broken chat streams are continued."""
        policy = node.policy
        self.step(node, "stream_recovery", "a chat stream that breaks after its first byte is "
                  f"continued by the next target, up to {policy.max_restarts} time(s) "
                  f"(continue_with: {policy.continue_with})")
        return self.walk(node.node, via)

    def _fallback(self, node: FallbackNode, via: Via) -> list[_Alt]:
        on = " ".join(str(s) for s in node.on.describe())
        self.step(node, "fallback", f"tries {len(node.nodes)} children in order; moves on "
                                    f"after: {on}")
        combos: list[_Alt] = [(1.0, (), (), "", None)]
        for child in node.nodes:
            branch = self.walk(child, via)
            combos = _trim([
                (p * q, labels + more, paths + more_paths, route or route2, error or error2)
                for p, labels, paths, route, error in combos
                for q, more, more_paths, route2, error2 in branch
            ])
        return combos

    def _loadbalance(self, node: LoadBalanceNode, via: Via) -> list[_Alt]:
        n = len(node.nodes)
        shares = node.probabilities()
        if node.algorithm == "weighted":
            how = "weighted: " + ", ".join(f"{w:g}" for w in node.weights)
        else:
            how = {"round_robin": "round_robin: each child in turn",
                   "least_busy": "least_busy: the child with the fewest requests in flight",
                   "latency": "latency: the child with the lowest recent latency"}.get(
                node.algorithm, node.algorithm)
            if node.algorithm != "round_robin":
                how += " (depends on live state; equal shares shown)"
        drained = sum(1 for w in node.weights if w <= 0)
        if drained:
            how += f"; {drained} drained (weight 0)"
        self.step(node, "loadbalance", f"picks one of {n} per request, {how}")
        self.decide(node.path)
        self.probabilistic = True
        out: list[_Alt] = []
        for share, child in zip(shares, node.nodes):
            branch = self.walk(child, via)
            # A drained child stays in the answer, at 0%, so the dry run shows it is drained.
            out.extend(_scaled(branch, share) if share else [(0.0, *alt[1:]) for alt in branch])
        return out

    def _conditional(self, node: ConditionalNode, via: Via) -> list[_Alt]:
        for i, rule in enumerate(node.rules):
            if rule.when(self.ctx):
                self.step(node, "conditional", f"rule {i + 1} matches ({rule.path})")
                self.decide(rule.path)
                return self.walk(rule.then, via)
        if node.default is None:
            self.step(node, "conditional", "no rule matches and there is no default: 400")
            self.decide(node.path)
            error = f"400 no_route_matched: no rule of route '{node.route}' matches this request"
            return [(1.0, (), (), via[-1], error)]
        self.step(node, "conditional", "no rule matches: the default decides")
        self.decide(node.path + ".default")
        return self.walk(node.default, via)

    def _canary(self, node: CanaryNode, via: Via) -> list[_Alt]:
        share = node.share
        if node.state.rolled_back:
            self.step(node, "canary", "rolled back: every request goes to stable")
            self.decide(node.path)
            return self.walk(node.stable, via)
        value = node.sticky(self.ctx)
        if not is_missing(value) and value is not None:
            _, arm_node = node.choose(self.ctx)
            arm = "canary" if arm_node is node.canary else "stable"
            self.step(node, "canary", f"sticky value {value!r} always lands on the {arm} arm "
                                      f"({share:g}% canary)")
            self.decide(node.path)
            return self.walk(arm_node, via)
        self.step(node, "canary", f"{share:g}% canary, {100 - share:g}% stable (no sticky value: "
                                  "random per request)")
        self.decide(node.path)
        self.probabilistic = True
        return _scaled(self.walk(node.stable, via), 1 - share / 100) + \
            _scaled(self.walk(node.canary, via), share / 100)

    # How the dry run simulates each kind of node (types.NODE_KINDS).
    by_kind: dict[str, Callable[[_Walker, Any, Via], list[_Alt]]] = {
        "target": _target, "route": _route, "deadline": _deadline, "fallback": _fallback,
        "loadbalance": _loadbalance, "conditional": _conditional, "canary": _canary,
        "stream_recovery": _stream_recovery,
    }


def _unwrapped(node: Node) -> Node:
    """The node inside wrappers (a strategy node's own timeout, a route's stream recovery)."""
    while node.kind in ("deadline", "stream_recovery"):
        (node,) = node.children()
    return node


def _scaled(alternatives: list[_Alt], factor: float) -> list[_Alt]:
    return [(alt[0] * factor, *alt[1:]) for alt in alternatives if alt[0] * factor > 0]


def _trim(alternatives: list[_Alt]) -> list[_Alt]:
    if len(alternatives) <= MAX_ALTERNATIVES:
        return alternatives
    ordered = sorted(alternatives, key=lambda a: -a[0])
    kept, rest = ordered[:MAX_ALTERNATIVES - 1], ordered[MAX_ALTERNATIVES - 1:]
    return kept + [(sum(a[0] for a in rest), ("<other>",), ("?",), rest[0][3], None)]


def _merge(alternatives: list[_Alt]) -> list[Alternative]:
    merged: dict[tuple[tuple[str, ...], str, str | None], tuple[float, tuple[str, ...]]] = {}
    for p, labels, paths, route, error in alternatives:
        key = (paths, route, error)
        if key in merged:
            merged[key] = (merged[key][0] + p, merged[key][1])
        else:
            merged[key] = (p, labels)
    out = [Alternative(p, labels, paths, route, error)
           for (paths, route, error), (p, labels) in merged.items()]
    return sorted(out, key=lambda a: -a.probability)


def _target_policies(node: TargetNode) -> dict[str, Any]:
    retry, timeouts = node.retry, node.timeouts
    info: dict[str, Any] = {
        "target": node.label,
        "retry": {"attempts": retry.attempts, "on": [str(s) for s in retry.on.describe()],
                  "backoff": retry.backoff},
        "timeout": {"total": timeouts.total, "connect": timeouts.connect,
                    "first_byte": timeouts.first_byte, "idle": timeouts.idle},
    }
    breaker = getattr(node, "breaker", None)
    if breaker is not None and getattr(breaker, "enabled", False):
        info["circuit_breaker"] = {"failure_threshold": breaker.failure_threshold,
                                   "cooldown": breaker.cooldown}
    if node.override_params:
        info["override_params"] = sorted(node.override_params)
    checks = getattr(node, "checks", ())
    if checks:
        info["checks"] = [getattr(c, "plugin", type(c).__name__) for c in checks]
    return info
