"""Per-request plugin state: one object per class, so a plugin reads only its own; the old
free-form ``ctx.notes`` still works, with a DeprecationWarning."""

from __future__ import annotations

import pytest

from gateway.graph.context import RequestContext


class MineState:
    def __init__(self, value: int = 0):
        self.value = value


class TheirsState:
    pass


def ctx() -> RequestContext:
    return RequestContext(endpoint="chat", body={}, route="r")


def test_state_is_kept_per_class():
    """keep_state returns what it keeps; state_for finds it by class, None for another."""
    c = ctx()
    kept = c.keep_state(MineState(3))
    assert c.state_for(MineState) is kept and kept.value == 3
    assert c.state_for(TheirsState) is None
    c.keep_state(MineState(4))  # keeping again replaces
    assert c.state_for(MineState).value == 4


def test_requests_do_not_share_state():
    """Each request starts with no plugin state."""
    first, second = ctx(), ctx()
    first.keep_state(MineState())
    assert second.state_for(MineState) is None


def test_notes_still_work_but_warn():
    """ctx.notes is deprecated: it warns, and keeps one dict per request."""
    c = ctx()
    with pytest.warns(DeprecationWarning, match="keep_state"):
        c.notes["x"] = 1
    with pytest.warns(DeprecationWarning):
        assert c.notes == {"x": 1}
