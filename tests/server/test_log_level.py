"""`gateway serve --log-level` and `server.log_level`: events below the level are not written."""

from __future__ import annotations

import time

from .. import loopback

CONFIG = """
version: 1
server: {{log_level: {level}}}
providers:
  demo: {{type: mock}}
routes:
  live: {{target: {{provider: demo, model: m}}}}
"""


def request_events(gw) -> int:
    assert loopback.post(gw.base_url + "/v1/chat/completions", timeout=10, json={
        "model": "live", "messages": [{"role": "user", "content": "x"}]}).status_code == 200
    time.sleep(0.1)  # let the log line reach the file
    return gw.log().count('"event":"request"')


def test_server_log_level_warning_leaves_out_request_lines(gateway_factory):
    """server.log_level: warning drops info events (the request log lines, "serving")."""
    gw = gateway_factory(CONFIG.format(level="warning"))
    assert request_events(gw) == 0
    assert '"event":"serving"' not in gw.log()


def test_log_level_flag_overrides_the_config(gateway_factory):
    """--log-level info on the command line wins over server.log_level: error."""
    gw = gateway_factory(CONFIG.format(level="error"), args=("--log-level", "info"))
    assert request_events(gw) == 1
