"""A bare string condition (``metadata.tier: premium``) is compiled to one fused function:
it must answer as the general ``$eq`` does, for every value a request can carry."""

from __future__ import annotations

import pytest

from gateway.graph.conditions import compile_condition
from gateway.graph.context import RequestContext

VALUES = ["premium", "Premium", "premium ", "", True, False, 1, 0, 1.0, None, ["premium"],
          {"premium": 1}]


def ctx_with(metadata, body) -> RequestContext:
    ctx = RequestContext(endpoint="chat", body={"model": "m"}, route="r")
    ctx.metadata, ctx.body = metadata, body
    return ctx


@pytest.mark.parametrize("root", ["metadata", "params"])
@pytest.mark.parametrize("text", ["premium", "", "1", "true"])
def test_a_bare_string_is_eq(root, text):
    fused = compile_condition({f"{root}.tier": text})
    general = compile_condition({f"{root}.tier": {"$eq": text}})
    holders = [{}, {"other": text}, None, [text], text] + [{"tier": v} for v in VALUES + [text]]
    for holder in holders:
        ctx = ctx_with(holder, {"model": "m"}) if root == "metadata" else ctx_with({}, holder)
        assert fused(ctx) is general(ctx), holder


def test_deeper_paths_and_other_fields_take_the_general_way():
    ctx = ctx_with({"a": {"b": "x"}}, {"model": "m"})
    assert compile_condition({"metadata.a.b": "x"})(ctx) is True
    assert compile_condition({"metadata.a": "x"})(ctx) is False
    assert compile_condition({"route": "r"})(ctx) is True
