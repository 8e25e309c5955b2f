"""Compile `when:` conditions into plain predicates over a RequestContext.

Field paths: ``metadata.<a>.<b>`` (request metadata), ``params.<a>`` (the request body),
``key.name``, ``route``. Operators: $eq $ne $gt $gte $lt $lte $in $nin $regex $exists, combined
with $and, $or, $not. A bare value means $eq. Everything is resolved here, once; evaluation is
a few dict lookups.
"""

from __future__ import annotations

import operator
import re
from typing import Any, Callable

from .context import RequestContext

Predicate = Callable[[RequestContext], bool]
CondPath = tuple[str | int, ...]  # where in the condition, for errors
_MISSING = object()


class ConditionError(ValueError):
    """A condition that cannot be compiled; ``path`` is relative to the condition."""

    def __init__(self, path: CondPath, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


def compile_condition(spec: dict[str, Any], path: CondPath = ()) -> Predicate:
    parts: list[Predicate] = []
    for key, value in spec.items():
        if key == "$and":
            subs = [compile_condition(s, path + (key, i)) for i, s in enumerate(value)]
            parts.append(_all_of(subs))
        elif key == "$or":
            subs = [compile_condition(s, path + (key, i)) for i, s in enumerate(value)]
            parts.append(_any_of(subs))
        elif key == "$not":
            sub = compile_condition(value, path + (key,))
            parts.append(_none_of([sub]))
        else:
            parts.append(_field_predicate(key, value, path + (key,)))
    return parts[0] if len(parts) == 1 else _all_of(parts)


def condition_fields(spec: dict[str, Any]) -> tuple[str, ...]:
    """The request fields a (valid) condition reads, as written (``metadata.tier``,
    ``params.user``, ``key.name``), each once, in the order they appear."""
    found: dict[str, None] = {}

    def visit(node: dict[str, Any]) -> None:
        for key, value in node.items():
            if key in ("$and", "$or"):
                for sub in value:
                    visit(sub)
            elif key == "$not":
                visit(value)
            else:
                found.setdefault(key, None)

    visit(spec)
    return tuple(found)


def _all_of(predicates: list[Predicate]) -> Predicate:
    return lambda ctx: all(p(ctx) for p in predicates)


def _any_of(predicates: list[Predicate]) -> Predicate:
    return lambda ctx: any(p(ctx) for p in predicates)


def _none_of(predicates: list[Predicate]) -> Predicate:
    return lambda ctx: not any(p(ctx) for p in predicates)


def _field_predicate(field_path: str, spec: Any, path: CondPath) -> Predicate:
    if isinstance(spec, str):
        fused = _text_equals(field_path, spec)
        if fused is not None:
            return fused
    getter = field_getter(field_path)
    ops = spec if isinstance(spec, dict) else {"$eq": spec}
    tests = [_operator(op, arg, path + (op,)) for op, arg in ops.items()]
    if len(tests) == 1:
        test = tests[0]
        return lambda ctx: test(getter(ctx))
    return lambda ctx: all(t(v) for v in (getter(ctx),) for t in tests)


def _text_equals(field_path: str, text: str) -> Predicate | None:
    """``metadata.<a>: "text"`` or ``params.<a>: "text"`` (one level), the commonest condition
    (``tier: premium``), as one function instead of a getter and a test: the same answer, as
    only an equal string equals a string (same() is for booleans and numbers)."""
    root, _, key = field_path.partition(".")
    if not key or "." in key:
        return None
    if root == "metadata":
        return lambda ctx: isinstance(m := ctx.metadata, dict) and m.get(key, _MISSING) == text
    if root == "params":
        return lambda ctx: isinstance(b := ctx.body, dict) and b.get(key, _MISSING) == text
    return None


def field_getter(field_path: str) -> Callable[[RequestContext], Any]:
    """A function returning the value at ``field_path`` for a request, or a missing marker."""
    if field_path == "route":
        return lambda ctx: ctx.route
    if field_path == "key.name":
        return lambda ctx: ctx.key_name if ctx.key_name is not None else _MISSING
    root, _, rest = field_path.partition(".")
    keys = tuple(rest.split("."))
    attr = "metadata" if root == "metadata" else "body"

    def get(ctx: RequestContext) -> Any:
        value: Any = getattr(ctx, attr)
        for k in keys:
            if not isinstance(value, dict):
                return _MISSING
            value = value.get(k, _MISSING)
            if value is _MISSING:
                return _MISSING
        return value

    return get


def is_missing(value: Any) -> bool:
    return value is _MISSING


def same(a: Any, b: Any) -> bool:
    """Equality that keeps booleans apart from numbers (Python says True == 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _operator(op: str, arg: Any, path: CondPath) -> Callable[[Any], bool]:
    if op == "$eq":
        return lambda v: v is not _MISSING and same(v, arg)
    if op == "$ne":
        return lambda v: v is _MISSING or not same(v, arg)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        compare: Callable[[Any, Any], bool] = {
            "$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le,
        }[op]
        return lambda v: _number(v) and compare(v, arg)
    if op in ("$in", "$nin"):
        choices = list(arg)

        def member(v: Any) -> bool:
            if v is _MISSING:
                return False
            values = v if isinstance(v, list) else (v,)
            return any(same(x, c) for x in values for c in choices)

        return member if op == "$in" else (lambda v: not member(v))
    if op == "$regex":
        try:
            pattern = re.compile(arg)
        except re.error as exc:
            raise ConditionError(path, f"invalid regular expression {arg!r}: {exc}") from None
        return lambda v: isinstance(v, str) and pattern.search(v) is not None
    if op == "$exists":
        return lambda v: (v is not _MISSING) == bool(arg)
    raise ConditionError(path, f"unknown operator {op}")
