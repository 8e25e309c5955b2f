"""Semantic diff of two configs: route by route, section by section, and what it does to routing.

Both sides are loaded with ``keep_refs`` (``${VAR}`` stays as written: a diff is about the
config in git, not about the environment of the machine running it) and with every secret
field masked (redact.py): secrets are compared and shown only as their references, key hashes
only as "changed". Each change says what kind of thing changed (node, target, weight, policy,
condition, ...), the old and new values, and where the new value is written.

For changed routes the diff also gives the routing before and after, in one line each
(``75% a/m | 25% b/m``, ``a/m -> b/m``, ``if metadata.tier: premium: ...``), and lists routes
whose routing changes only because a route they reference changed.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..types import CONFIG_NODE_KINDS
from .loader import LoadedConfig
from .redact import SECRET_KEYS, SECRET_PARENTS, mask_data
from .source import Path

ENTRY_SECTIONS = ("providers", "routes", "keys", "pricing", "environments")
SECTION_ORDER = ("version", "server", "defaults", "providers", "routes", "keys", "limits",
                 "cache", "pricing", "plugins", "observability", "environments")
POLICY_KEYS = frozenset({
    "retry", "timeout", "on_status", "circuit_breaker", "percent", "sticky", "rollback",
    "algorithm", "limits", "cache", "override_params", "budget", "expires", "routes",
    "retry_budget", "health_check",
})
HIDDEN_KEYS = frozenset({"key_sha256"})  # compared, never shown


@dataclass(frozen=True)
class Side:
    """One side of a diff: a label for people and the loaded config (keep_refs=True)."""

    label: str
    loaded: LoadedConfig
    located: bool = True  # its positions point into files one can open


@dataclass(frozen=True)
class Change:
    section: str  # top-level key: routes, providers, server, ...
    name: str | None  # the entry (route, provider, key, plugin) or None for a setting
    path: str  # inside the entry (or the section): fallback.targets[0].target.model
    kind: str  # added | removed | changed
    what: str  # node | target | weight | policy | condition | key | secret | setting | ...
    old: Any = None
    new: Any = None
    at: str | None = None  # FILE:LINE of the new value (of the old one for a removal)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ConfigDiff:
    old: str
    new: str
    changes: list[Change] = field(default_factory=list)
    routing: dict[str, dict[str, str | None]] = field(default_factory=dict)  # route -> old/new
    affected: dict[str, list[str]] = field(default_factory=dict)  # route -> changed refs

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def routes(self) -> dict[str, list[str]]:
        """Route names added, removed and changed."""
        out: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
        for c in self.changes:
            if c.section != "routes" or c.name is None:
                continue
            kind = c.kind if c.path == "" and c.kind != "changed" else "changed"
            if c.name not in out[kind]:
                out[kind].append(c.name)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "changed": self.changed,
            "routes": self.routes(),
            "sections": sorted({c.section for c in self.changes if c.section != "routes"},
                               key=_section_rank),
            "changes": [c.as_dict() for c in self.changes],
            "routing": self.routing,
            "affected": self.affected,
        }


def diff(old: Side, new: Side) -> ConfigDiff:
    """Every difference between two loaded configs, in section order."""
    a, b = _prepared(old.loaded), _prepared(new.loaded)
    out = ConfigDiff(old.label, new.label)
    where = _Where(old, new)
    for section in sorted(set(a) | set(b), key=_section_rank):
        if a.get(section) == b.get(section):
            continue
        if section in ENTRY_SECTIONS and _mapping_or_none(a.get(section), b.get(section)):
            _entries(out, section, a.get(section) or {}, b.get(section) or {}, where)
        elif section == "plugins" and _list_or_none(a.get(section), b.get(section)):
            _entries(out, section, _by_name(a.get(section)), _by_name(b.get(section)), where,
                     paths=(_plugin_paths(a.get(section)), _plugin_paths(b.get(section))))
        else:
            for path, kind, x, y in _compare(a.get(section), b.get(section), ()):
                out.changes.append(_change(section, None, path, kind, x, y, where, (section,)))
    _routing(out, a.get("routes") or {}, b.get("routes") or {})
    return out


def _prepared(loaded: LoadedConfig) -> dict[str, Any]:
    data = loaded.data if isinstance(loaded.data, dict) else {"(document)": loaded.data}
    data = dict(data)
    if loaded.overlays and loaded.environment is None:
        data["environments"] = loaded.overlays  # no overlay applied: review the overlays too
    masked: dict[str, Any] = mask_data(data)
    return masked


def _section_rank(name: str) -> tuple[int, str]:
    return (SECTION_ORDER.index(name) if name in SECTION_ORDER else len(SECTION_ORDER), name)


def _mapping_or_none(*values: Any) -> bool:
    return all(v is None or isinstance(v, dict) for v in values)


def _list_or_none(*values: Any) -> bool:
    return all(v is None or isinstance(v, list) for v in values)


def _by_name(items: list[Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, item in enumerate(items or []):
        name = item.get("name") if isinstance(item, dict) else None
        out[str(name) if name is not None and str(name) not in out else f"[{i}]"] = item
    return out


def _plugin_paths(items: list[Any] | None) -> dict[str, Path]:
    names = list(_by_name(items))
    return {name: ("plugins", i) for i, name in enumerate(names)}


def _entries(out: ConfigDiff, section: str, a: dict[str, Any], b: dict[str, Any], where: "_Where",
             paths: tuple[dict[str, Path], dict[str, Path]] | None = None) -> None:
    for name in list(a) + [n for n in b if n not in a]:
        old_path: Path = paths[0].get(name, ()) if paths else (section, name)
        new_path: Path = paths[1].get(name, ()) if paths else (section, name)
        if name not in b:
            out.changes.append(_change(section, name, (), "removed", a[name], None, where,
                                       old_path, old_path))
        elif name not in a:
            out.changes.append(_change(section, name, (), "added", None, b[name], where,
                                       new_path))
        elif a[name] != b[name]:
            for path, kind, x, y in _compare(a[name], b[name], ()):
                out.changes.append(_change(section, name, path, kind, x, y, where,
                                           new_path + path, old_path + path))


def _compare(a: Any, b: Any, path: Path) -> list[tuple[Path, str, Any, Any]]:
    """(path, kind, old, new) for every difference, nodes and lists aligned sensibly."""
    if a == b and type(a) is type(b):
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        ka, kb = _node_kind(a), _node_kind(b)
        if ka and kb and ka != kb:
            return [(path, "changed", a, b)]
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            if key not in b:
                out.append((path + (key,), "removed", a[key], None))
            elif key not in a:
                out.append((path + (key,), "added", None, b[key]))
            else:
                out.extend(_compare(a[key], b[key], path + (key,)))
        return out
    if isinstance(a, list) and isinstance(b, list):
        return _compare_lists(a, b, path)
    return [(path, "changed", a, b)]


def _compare_lists(a: list[Any], b: list[Any], path: Path) -> list[tuple[Path, str, Any, Any]]:
    if not all(isinstance(x, (dict, list)) for x in a + b):
        return [(path, "changed", a, b)]  # a list of plain values reads best whole
    keys_a, keys_b = [_canonical(x) for x in a], [_canonical(x) for x in b]
    out: list[tuple[Path, str, Any, Any]] = []
    matcher = difflib.SequenceMatcher(a=keys_a, b=keys_b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if op == "replace" and i2 - i1 == j2 - j1:
            for i, j in zip(range(i1, i2), range(j1, j2)):
                out.extend(_compare(a[i], b[j], path + (j,)))
            continue
        out.extend((path + (i,), "removed", a[i], None) for i in range(i1, i2))
        out.extend((path + (j,), "added", None, b[j]) for j in range(j1, j2))
    return out


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _node_kind(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    return next((k for k in CONFIG_NODE_KINDS if k in value), None)


def _change(section: str, name: str | None, path: Path, kind: str, old: Any, new: Any,
            where: "_Where", new_path: Path, old_path: Path | None = None) -> Change:
    what = _what(section, path, old if new is None else new)
    if what == "key":
        old, new = _hide_hash(old), _hide_hash(new)
    at = where.old(old_path or new_path) if kind == "removed" else where.new(new_path)
    return Change(section, name, dotted(path), kind, what, old, new, at)


def _what(section: str, path: Path, value: Any) -> str:
    keys = [p for p in path if isinstance(p, str)]
    last = keys[-1] if keys else None
    if last in HIDDEN_KEYS:
        return "key"
    if any(k in SECRET_KEYS or k in SECRET_PARENTS for k in keys):
        return "secret"
    if section == "keys" and not path:
        return "key"
    if section != "routes":
        if section in ("limits", "cache") or any(k in POLICY_KEYS for k in keys):
            return "policy"
        return "setting"
    if not path:
        return "route"
    if "when" in keys:
        return "condition"
    if last == "weight":
        return "weight"
    if last == "description":
        return "description"
    if last in ("provider", "model") and "target" in keys:
        return "target"
    if _node_kind(value) or last in CONFIG_NODE_KINDS:
        return "node"
    if any(k in POLICY_KEYS for k in keys):
        return "policy"
    return "setting"


def _hide_hash(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("(hidden)" if k in HIDDEN_KEYS else v) for k, v in value.items()}
    return None if value is None else "(hash hidden)"


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Where:
    """FILE:LINE of a path on either side, when that side is a file one can open."""

    def __init__(self, old: Side, new: Side):
        self._old, self._new = old, new

    def old(self, path: Path) -> str | None:
        return self._at(self._old, path)

    def new(self, path: Path) -> str | None:
        return self._at(self._new, path)

    @staticmethod
    def _at(side: Side, path: Path) -> str | None:
        if not side.located:
            return None
        source = side.loaded.source
        line, _ = source.key_position(path)
        return f"{source.file_of(path)}:{line}"


# -- routing, in one line per route --------------------------------------------------------


def _routing(out: ConfigDiff, a: dict[str, Any], b: dict[str, Any]) -> None:
    changed = list(dict.fromkeys(c.name for c in out.changes if c.section == "routes" and c.name))
    for name in changed:
        out.routing[name] = {"old": describe_route(name, a) if name in a else None,
                             "new": describe_route(name, b) if name in b else None}
    for name in b:
        if name in changed or name not in a:
            continue
        via = sorted(r for r in changed if r in _references(name, a, set()) |
                     _references(name, b, set()))
        if via and describe_route(name, a) != describe_route(name, b):
            out.affected[name] = via
            out.routing[name] = {"old": describe_route(name, a), "new": describe_route(name, b)}


def _references(name: str, routes: dict[str, Any], seen: set[str]) -> set[str]:
    """Routes that route ``name`` reaches through route references."""
    if name in seen or not isinstance(routes.get(name), dict):
        return set()
    seen.add(name)
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            ref = value.get("route")
            if isinstance(ref, str) and ref in routes:
                found.add(ref)
                found.update(_references(ref, routes, seen))
            for k, v in value.items():
                if k != "when":
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(routes[name])
    return found


def describe_route(name: str, routes: dict[str, Any]) -> str:
    return describe_node(routes.get(name), routes, (name,))


def describe_node(node: Any, routes: dict[str, Any], stack: tuple[str, ...] = ()) -> str:
    """One line saying how a node (config data) routes: order, shares and conditions."""
    kind = _node_kind(node)
    if kind is None:
        return "?"
    value = node[kind]
    if kind == "target":
        if not isinstance(value, dict):
            return "?"
        return f"{value.get('provider', '?')}/{value.get('model', '?')}"
    if kind == "route":
        if value in stack:
            return f"route {value} (cycle)"
        if value not in routes:
            return f"route {value} (unknown)"
        return describe_node(routes[value], routes, stack + (value,))
    if not isinstance(value, dict):
        return "?"
    if kind == "fallback":
        return " -> ".join(_wrapped(c, routes, stack) for c in value.get("targets") or [])
    if kind == "loadbalance":
        return _describe_loadbalance(value, routes, stack)
    if kind == "canary":
        percent = value.get("percent", 0)
        share = percent if isinstance(percent, (int, float)) else None
        stable = _wrapped(value.get("stable"), routes, stack)
        canary = _wrapped(value.get("canary"), routes, stack)
        if share is None:
            return f"canary {percent}%: {canary} | stable: {stable}"
        return f"{_pct(100 - share)} {stable} | {_pct(share)} canary {canary}"
    rules = [f"if {_flow(r.get('when'))}: {_wrapped(r.get('then'), routes, stack)}"
             for r in value.get("rules") or [] if isinstance(r, dict)]
    default = value.get("default")
    rules.append(f"else: {_wrapped(default, routes, stack)}" if default is not None
                 else "else: 400 no_route_matched")
    return "; ".join(rules)


def _describe_loadbalance(value: dict[str, Any], routes: dict[str, Any], stack: tuple[str, ...]) -> str:
    items = [t for t in value.get("targets") or [] if isinstance(t, dict)]
    algorithm = value.get("algorithm", "weighted")
    parts = [_wrapped(t, routes, stack) for t in items]
    if algorithm != "weighted":
        return f"{algorithm}: " + " | ".join(parts)
    weights = [t.get("weight", 1) for t in items]
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        return "weighted: " + " | ".join(f"{w}x {p}" for w, p in zip(weights, parts))
    total = sum(weights) or 1
    return " | ".join(f"{_pct(100 * w / total)} {p}" for w, p in zip(weights, parts))


def _wrapped(node: Any, routes: dict[str, Any], stack: tuple[str, ...]) -> str:
    text = describe_node(node, routes, stack)
    separators = (" -> ", " | ", "; ")
    return f"({text})" if any(s in text for s in separators) else text


def _pct(value: float) -> str:
    return f"{value:.0f}%" if abs(value - round(value)) < 1e-9 else f"{value:.1f}%"


def _flow(value: Any) -> str:
    """A compact YAML-flow rendering: {metadata.tier: premium}."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str) and (not value or any(c in value for c in ",:{}[]#&*!|>'\"%@`")):
        return json.dumps(value)
    return str(value)


flow = _flow
