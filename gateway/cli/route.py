"""gateway route: a dry run of one request through the compiled graph.

    gateway route MODEL [--metadata k=v]... [--param k=v]... [--key NAME]

Says which node decides, which targets would be tried and in which order (with the
probabilities of load balancers and canaries) and which policies apply. Nothing is sent
upstream. Exit 0 when the request would be routed, 1 when the gateway would refuse it, 2 when
the config does not load.
"""

from __future__ import annotations

import argparse

from ..config.compiler import compile_file
from ..errors import ConfigErrors
from ..graph.explain import Explanation, explain
from ..units import duration_text
from ._common import (
    add_config_options,
    add_format_option,
    fail,
    parse_pairs,
    print_errors,
    print_json,
    require_config,
)


def register(sub) -> None:
    p = sub.add_parser("route", help="dry run: which targets a request would go to, in order")
    p.add_argument("model", metavar="MODEL", help="the model (route name) a client would send")
    p.add_argument("--metadata", "-m", action="append", metavar="K=V",
                   help="request metadata, as in the x-gateway-metadata header (repeatable)")
    p.add_argument("--param", "-p", action="append", metavar="K=V",
                   help="a request body parameter, e.g. max_tokens=5000 (repeatable)")
    p.add_argument("--key", "-k", metavar="NAME", help="the virtual key (by its name in keys:)")
    add_config_options(p)
    add_format_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        metadata = parse_pairs(args.metadata, "--metadata")
        params = parse_pairs(args.param, "--param")
    except ValueError as exc:
        return fail(str(exc))
    if (missing := require_config(args.config)) is not None:
        return missing
    try:
        graph = compile_file(args.config, environment=args.environment)
    except ConfigErrors as exc:
        print_errors(exc)
        return fail(f"{args.config}: does not load (errors above)")
    result = explain(graph, args.model, metadata=metadata, params=params, key=args.key)
    unknown = result.route is None and result.status == 404
    if args.format == "json":
        extra = {"routes": sorted(graph.routes)} if unknown else {}
        print_json({"config": args.config, **result.as_dict(), **extra})
    else:
        lines = render(result, args.config)
        if unknown and "did you mean" not in (result.error or ""):
            lines.append(_suggest(args.model, list(graph.routes)))
        print("\n".join(lines))
    return 1 if result.rejected else 0


def _suggest(model: str, routes: list[str]) -> str:
    """For a route name explain found nothing close to: the same name in another case, or the
    routes there are."""
    same = [r for r in routes if r.lower() == model.lower()]
    if same:
        return f"  did you mean '{same[0]}'? (route names are case-sensitive)"
    shown = ", ".join(sorted(routes)[:20]) + (", ..." if len(routes) > 20 else "")
    return f"  routes in this config: {shown or '(none)'}"


def render(e: Explanation, config: str) -> list[str]:
    who = f", key {e.key}" if e.key else ""
    lines = [f"route {e.model}  ({config}{who})"]
    if e.rejected and not e.alternatives:
        lines.append(f"  rejected: {e.status} {e.error}")
        return lines
    lines.append(f"  decided by  {e.decided_by}")
    if e.steps:
        lines.append("  decisions")
        width = max(len(s.path) for s in e.steps)
        lines += [f"    {s.path:{width}}  {s.node}: {s.decision}" for s in e.steps]
    lines.append("  tried in order" if e.deterministic else "  alternatives (probability: "
                                                          "targets tried in order)")
    for alt in e.alternatives:
        chain = " -> ".join(alt.targets) if alt.targets else ""
        if alt.error:
            chain = (chain + "  then " if chain else "") + f"rejected {alt.error}"
        via = f"   (route {alt.route})" if alt.route != e.model else ""
        lines.append(f"    {alt.probability * 100:5.1f}%  {chain}{via}")
    if e.rejected:
        lines.append(f"  rejected: {e.status} {e.error}")
    lines.append("  policies")
    lines.append(f"    middleware  {', '.join(e.middleware) if e.middleware else '(none)'}")
    for info in e.targets.values():
        lines.append(f"    {info['target']}  {_policies(info)}")
    lines += [f"  note: {n}" for n in e.notes]
    return lines


def _policies(info: dict) -> str:
    retry, timeout = info["retry"], info["timeout"]
    parts = [f"retry {retry['attempts']} attempt(s) on {' '.join(retry['on'])} "
             f"({retry['backoff']})" if retry["attempts"] > 1 else "no retry",
             f"timeout {duration_text(timeout['total'])} (connect "
             f"{duration_text(timeout['connect'])}, first byte "
             f"{duration_text(timeout['first_byte'])})"]
    if "circuit_breaker" in info:
        cb = info["circuit_breaker"]
        parts.append(f"breaker after {cb['failure_threshold']} failures, "
                     f"{duration_text(cb['cooldown'])} cooldown")
    if "override_params" in info:
        parts.append("overrides " + ", ".join(info["override_params"]))
    if "checks" in info:
        parts.append("checked by " + ", ".join(info["checks"]))
    return "; ".join(parts)
