"""Redis is an optional extra (`pip install 'bodhi-gateway[redis]'`): a config that asks for it
without the package installed is refused like any other config error, at the URL."""

from __future__ import annotations

import sys

from ..cli_runner import run_cli

CONFIG = """\
version: 1
server:
  state: {state}
providers:
  demo: {{type: mock}}
routes:
  chat:
    target: {{provider: demo, model: m}}
"""


def test_redis_state_without_the_package_is_a_config_error(tmp_path, monkeypatch):
    """`gateway validate` points at the redis:// value (FILE:LINE:COL) and names the extra."""
    monkeypatch.setitem(sys.modules, "redis", None)  # as if it were not installed
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.format(state="redis://127.0.0.1:6379/0"))
    result = run_cli("validate", str(path))
    assert result.code == 1
    assert f"{path}:3:10: $.server.state: " in result.text
    assert "pip install 'bodhi-gateway[redis]'" in result.text


def test_other_state_backends_need_no_redis_package(tmp_path, monkeypatch):
    """sqlite and memory state validate without the package."""
    monkeypatch.setitem(sys.modules, "redis", None)
    for state in ("sqlite", "memory"):
        path = tmp_path / f"{state}.yaml"
        path.write_text(CONFIG.format(state=state))
        assert run_cli("validate", str(path)).code == 0


def test_redis_state_with_the_package_is_accepted(tmp_path):
    """With the package installed (the test extra has it) the same config is valid."""
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.format(state="redis://127.0.0.1:6379/0"))
    assert run_cli("validate", str(path)).code == 0
