"""observability.request_log: the boolean, the object form and the shorthands mean one thing;
a setting written in two places is an error at its line."""

from __future__ import annotations

import pytest

from gateway.config.compiler import compile_bytes
from gateway.config.request_log import RequestLogSettings, request_log_settings
from gateway.errors import ConfigErrors

BASE = """version: 1
providers:
  demo: {type: mock}
routes:
  chat: {target: {provider: demo, model: m}}
observability:
"""


@pytest.mark.parametrize("observability, expected", [
    (None, RequestLogSettings()),
    ({"request_log": False}, RequestLogSettings(enabled=False)),
    ({"request_log": {"retention": "7d", "log_bodies": True, "queue_size": 5, "path": "/x.db"}},
     RequestLogSettings(retention_s=7 * 86400, log_bodies=True, queue_size=5, path="/x.db")),
    ({"retention": "1h", "log_bodies": True}, RequestLogSettings(retention_s=3600, log_bodies=True)),
    ({"request_log": True, "retention": "2d"}, RequestLogSettings(retention_s=2 * 86400)),
])
def test_settings_from_each_spelling(observability, expected):
    """Defaults, the boolean, the object, the shorthands, and a shorthand beside true."""
    assert request_log_settings(observability) == expected


def test_both_places_is_an_error_at_the_shorthand():
    """retention in the object and beside it: refused, at the shorthand's line."""
    text = BASE + "  request_log: {retention: 7d}\n  retention: 30d\n"
    with pytest.raises(ConfigErrors) as info:
        compile_bytes(text.encode(), "g.yaml")
    (err,) = info.value.errors
    assert (err.line, err.path) == (8, "$.observability.retention")
    assert "write it in one place" in err.message


def test_off_turns_the_request_event_off_too():
    """enabled: false: no rows and no `request` log event, as the boolean false."""
    graph = compile_bytes((BASE + "  request_log: {enabled: false}\n").encode(), "g.yaml")
    assert graph.log_requests is False
    assert "request_log" not in {name for name, _ in graph.request_finished}


def test_schema_refuses_unknown_keys_and_bad_values():
    """Unknown keys, a queue of 0, a duration that is none, a string: config errors."""
    for bad in ("  request_log: {keep: 7d}\n", "  request_log: {queue_size: 0}\n",
                "  retention: forever\n", "  request_log: yes please\n"):
        with pytest.raises(ConfigErrors):
            compile_bytes((BASE + bad).encode(), "g.yaml")
