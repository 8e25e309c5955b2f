"""gateway test: golden routing tests, run against the compiled graph without any upstream call.

    gateway test [CASES.yaml] [--config FILE] [--env NAME]

A cases file lives next to the config (default: routing-tests.yaml beside it):

    config: gateway.yaml            # optional, relative to this file (--config wins)
    cases:
      - name: premium users get the big model
        model: tiered
        metadata: {tier: premium}     # also: params, key, config, environment
        expect:
          route: smart                # the route that decides (after route references)
          first_target: demo/large    # the target tried first (must not be random)
          targets: [demo/large, demo/small]   # the whole order (fallback_order: the same)
          shares: {demo/a: 75, demo/b: 25}    # percent of first attempts (load balancing)
          decided_by: $.routes.tiered.conditional.rules[0]
      - name: the research key may not use internal
        model: internal
        key: research
        expect: {rejected: 403}

Exit 0 when every case passes, 1 on any mismatch, 2 when a file does not load.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any

from ..config.compiler import compile_file
from ..config.loader import decode, parse, read_file
from ..config.source import SourceMap
from ..config.suggest import did_you_mean
from ..errors import ConfigError, ConfigErrors
from ..graph.explain import Explanation, explain
from ..graph.graph import RoutingGraph
from ._common import add_format_option, fail, print_errors, print_json, require_config

TOP_KEYS = {"config": str, "environment": str, "cases": list}
CASE_KEYS = {"name": str, "model": str, "metadata": dict, "params": dict, "key": str,
             "config": str, "environment": str, "expect": dict}
EXPECT_KEYS = {"route": str, "first_target": str, "targets": list, "fallback_order": list,
               "shares": dict, "decided_by": str, "rejected": (int, bool)}
SHARE_TOLERANCE = 0.05  # percentage points
EXAMPLE = """\
# routing-tests.yaml, beside gateway.yaml
cases:
  - name: chat goes to the first target
    model: chat                     # the route a client asks for
    expect: {first_target: demo/mock-1}
  - name: an unknown model is refused
    model: nope
    expect: {rejected: 404}
"""


def register(sub) -> None:
    p = sub.add_parser("test", help="run golden routing tests (no upstream calls); exit 1 on "
                                    "any mismatch")
    p.add_argument("cases", nargs="?", metavar="CASES.yaml",
                   help="the cases file (default: routing-tests.yaml beside the config)")
    p.add_argument("--config", "-c", help="the config to test (default: the cases file's "
                                          "config:, else gateway.yaml beside it)")
    p.add_argument("--env", "-e", dest="environment", metavar="NAME",
                   help="merge the environments.NAME overlay (default: $GATEWAY_ENV)")
    add_format_option(p)
    p.set_defaults(func=run)


@dataclass
class Case:
    index: int
    name: str
    line: int
    spec: dict
    failures: list[tuple[str, Any, Any]] = field(default_factory=list)
    explanation: Explanation | None = None
    config: str = ""


def run(args: argparse.Namespace) -> int:
    cases_path = args.cases or os.path.join(os.path.dirname(args.config or "") or ".",
                                            "routing-tests.yaml")
    if not os.path.exists(cases_path):
        return fail(f"no cases file: {cases_path} does not exist. Write one (or name it: "
                    f"gateway test CASES.yaml), for example:\n\n{EXAMPLE}")
    try:
        top, source = load_cases(cases_path)
    except ConfigErrors as exc:
        print_errors(exc)
        return fail(f"{cases_path}: not a valid cases file (errors above)")
    folder = os.path.dirname(cases_path)
    default_config = args.config or os.path.join(folder, top.get("config", "gateway.yaml"))
    graphs: dict[tuple, RoutingGraph] = {}
    cases = []
    for i, spec in enumerate(top["cases"]):
        config = os.path.join(folder, spec["config"]) if "config" in spec else default_config
        environment = spec.get("environment") or args.environment or top.get("environment")
        if (missing := require_config(config)) is not None:
            return missing
        try:
            graph = graphs.get((config, environment)) or compile_file(
                config, environment=environment)
        except ConfigErrors as exc:
            print_errors(exc)
            return fail(f"{config}: does not load (errors above)")
        graphs[(config, environment)] = graph
        case = Case(i, spec.get("name") or f"case {i + 1}", source.position(("cases", i))[0],
                    spec, config=config)
        check(case, graph)
        cases.append(case)
    failed = [c for c in cases if c.failures]
    if args.format == "json":
        print_json({"cases_file": cases_path, "passed": len(cases) - len(failed),
                    "failed": len(failed), "results": [_result(c, cases_path) for c in cases]})
    else:
        _render(cases, cases_path)
    return 1 if failed else 0


def load_cases(path: str) -> tuple[dict, SourceMap]:
    try:
        raw = read_file(path)
    except OSError as exc:
        raise ConfigErrors([ConfigError(path, 1, 1, "$", f"cannot read cases: {exc.strerror}",
                                        "write one (see `gateway test --help`) or name it")])
    data, source = parse(decode(raw, path), path, os.environ)
    errors: list[ConfigError] = []
    if not isinstance(data, dict):
        raise ConfigErrors([source.error((), "a cases file is a mapping with a cases: list")])
    _check_keys(data, (), TOP_KEYS, source, errors)
    if "cases" not in data:
        errors.append(source.error((), "missing required key 'cases'"))
    for i, case in enumerate(data.get("cases") or []):
        here = ("cases", i)
        if not isinstance(case, dict):
            errors.append(source.error(here, "a case is a mapping: {model: ..., expect: ...}"))
            continue
        _check_keys(case, here, CASE_KEYS, source, errors)
        for required in ("model", "expect"):
            if required not in case:
                errors.append(source.error(here, f"missing required key '{required}'"))
        expect = case.get("expect")
        if isinstance(expect, dict):
            _check_keys(expect, here + ("expect",), EXPECT_KEYS, source, errors)
            if not expect:
                errors.append(source.error(here + ("expect",), "expect is empty: say what "
                                           "should happen (route, first_target, rejected, ...)"))
    if errors:
        raise ConfigErrors(errors)
    return data, source


def _check_keys(data: dict, path: tuple, allowed: dict, source: SourceMap,
                errors: list[ConfigError]) -> None:
    for key, value in data.items():
        if key not in allowed:
            errors.append(source.error(path + (key,), f"unknown key '{key}'",
                                       did_you_mean(key, allowed), at_key=True))
        elif not isinstance(value, allowed[key]):
            kind = allowed[key]
            names = "/".join(t.__name__ for t in kind) if isinstance(kind, tuple) else kind.__name__
            errors.append(source.error(path + (key,), f"{key} must be a {names}"))


def check(case: Case, graph: RoutingGraph) -> None:
    spec, expect = case.spec, case.spec["expect"]
    e = explain(graph, spec["model"], metadata=spec.get("metadata"), params=spec.get("params"),
                key=spec.get("key"))
    case.explanation = e
    wanted = expect.get("rejected")
    if wanted is not None and wanted is not False:
        if not e.rejected or (wanted is not True and e.status != wanted):
            case.failures.append(("rejected", wanted, _outcome(e)))
        return
    if e.rejected:
        case.failures.append(("routed", "a routed request", f"rejected {e.status}: {e.error}"))
        return
    if "route" in expect and e.final_route != expect["route"]:
        got = e.final_route or "varies: " + ", ".join(sorted({a.route for a in e.alternatives}))
        case.failures.append(("route", expect["route"], got))
    firsts = e.first_targets()
    if "first_target" in expect and list(firsts) != [expect["first_target"]]:
        case.failures.append(("first_target", expect["first_target"], _shares(firsts)))
    order = expect.get("targets", expect.get("fallback_order"))
    if order is not None:
        tried = list(e.alternatives[0].targets) if e.deterministic else None
        if tried != order:
            name = "targets" if "targets" in expect else "fallback_order"
            case.failures.append((name, order, tried if tried is not None else _alternatives(e)))
    if "shares" in expect:
        want = {str(k): float(v) for k, v in expect["shares"].items()}
        have = {k: v * 100 for k, v in firsts.items()}
        if set(want) != set(have) or any(abs(want[k] - have[k]) > SHARE_TOLERANCE for k in want):
            case.failures.append(("shares", _shares({k: v / 100 for k, v in want.items()}),
                                  _shares(firsts)))
    if "decided_by" in expect and e.decided_by != expect["decided_by"]:
        case.failures.append(("decided_by", expect["decided_by"], e.decided_by))


def _outcome(e: Explanation) -> str:
    if e.rejected:
        return f"rejected {e.status}: {e.error}"
    return "routed: " + _alternatives(e)


def _alternatives(e: Explanation) -> str:
    return "; ".join(f"{a.probability * 100:g}% " + " -> ".join(a.targets)
                     for a in e.alternatives)


def _shares(firsts: dict[str, float]) -> str:
    return ", ".join(f"{p * 100:g}% {t}" for t, p in firsts.items()) or "(none)"


def _render(cases: list[Case], path: str) -> None:
    configs = sorted({c.config for c in cases})
    print(f"{path}: {len(cases)} case(s) against {', '.join(configs) or '(none)'}")
    for case in cases:
        if not case.failures:
            print(f"  ok    {case.name}")
            continue
        print(f"  FAIL  {case.name}   [{path}:{case.line}]")
        for name, expected, got in case.failures:
            print(f"          {name}: expected {_show(expected)}")
            print(f"          {' ' * len(name)}  got      {_show(got)}")
    failed = sum(1 for c in cases if c.failures)
    print(f"{len(cases) - failed} passed, {failed} failed")


def _show(value: Any) -> str:
    if isinstance(value, list):
        return " -> ".join(map(str, value)) if value else "(nothing)"
    return str(value)


def _result(case: Case, path: str) -> dict:
    return {
        "name": case.name, "at": f"{path}:{case.line}", "config": case.config,
        "ok": not case.failures,
        "failures": [{"field": f, "expected": x, "got": y} for f, x, y in case.failures],
        "explanation": case.explanation.as_dict() if case.explanation else None,
    }
