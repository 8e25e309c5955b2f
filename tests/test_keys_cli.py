"""`gateway keys create` checks its input like POST /admin/keys and gateway.yaml, and `gateway
route` / `gateway test` know the keys it creates (issue 12, items 7 and 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main

CONFIG = """\
version: 1
providers:
  demo: {type: mock}
routes:
  chat: {target: {provider: demo, model: m}}
  internal: {target: {provider: demo, model: i}}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    return path


def create(config: Path, *flags: str) -> int:
    return main(["keys", "create", *flags, "--config", str(config)])


@pytest.mark.parametrize("flags,message", [
    (("--rpm", "-5"), "--rpm: -5 must be at least 1"),
    (("--rpm", "0"), "--rpm: 0 must be at least 1"),
    (("--tpm", "0"), "--tpm: 0 must be at least 1"),
    (("--budget", "-1"), "--budget: -1"),
    (("--budget", "0"), "--budget: 0"),
    (("--routes", "chat,chta"), "--routes: unknown route 'chta' (did you mean 'chat'?)"),
    (("--period", "daily"), "--period: period needs a budget"),
    (("--expires", "someday"), "--expires: 'someday'"),
    (("--metadata", "novalue"), "--metadata: 'novalue': write it as key=value"),
    (("--file-storage", "lots"), "--file-storage: "),
])
def test_cli_key_input_follows_the_schema(config: Path, capsys, flags, message):
    """Negative, zero and unknown values are refused with the flag named; nothing is stored."""
    assert create(config, "bad", *flags) == 1
    err = capsys.readouterr().err
    assert message in err, err
    assert main(["keys", "list", "--format", "json", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "[]"


def test_first_key_says_the_gateway_now_requires_keys(config: Path, capsys):
    """The first key created prints the consequence; the second does not repeat it."""
    assert create(config, "one", "--rpm", "5", "--budget", "10", "--period", "daily") == 0
    first = capsys.readouterr()
    assert first.out.startswith("gw-")
    assert "every request to this gateway needs a key" in first.err
    assert create(config, "two") == 0
    assert "needs a key" not in capsys.readouterr().err
    assert main(["keys", "list", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "requests_per_minute=5" in listing and "$10/daily" in listing


def test_a_key_may_get_its_own_file_storage_quota(config: Path, capsys):
    """--file-storage sets the key's limits.file_storage, as POST /admin/keys can."""
    assert create(config, "archivist", "--file-storage", "2GB", "--rpm", "60") == 0
    capsys.readouterr()
    assert main(["keys", "list", "--format", "json", "--config", str(config)]) == 0
    (key,) = json.loads(capsys.readouterr().out)
    assert key["limits"] == {"requests_per_minute": 60, "file_storage": "2GB"}


def test_route_and_test_know_keys_created_at_run_time(config: Path, tmp_path: Path, capsys):
    """`gateway route --key` and `gateway test` use the server's key store: a created key is
    known, its routes apply, a revoked one is refused as revoked."""
    assert create(config, "svc", "--routes", "chat") == 0
    capsys.readouterr()
    assert main(["route", "chat", "--key", "svc", "--config", str(config)]) == 0
    assert "declares no keys" not in capsys.readouterr().out
    assert main(["route", "internal", "--key", "svc", "--config", str(config)]) == 1
    assert "403" in capsys.readouterr().out
    assert main(["route", "chat", "--config", str(config)]) == 1
    assert "401 missing_api_key" in capsys.readouterr().out
    cases = tmp_path / "routing-tests.yaml"
    cases.write_text("cases:\n"
                     "  - {name: svc may chat, model: chat, key: svc, expect: {route: chat}}\n"
                     "  - {name: svc may not, model: internal, key: svc, expect: {rejected: 403}}\n"
                     "  - {name: no key, model: chat, expect: {rejected: 401}}\n")
    assert main(["test", str(cases), "--config", str(config)]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert main(["keys", "revoke", "svc", "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["route", "chat", "--key", "svc", "--config", str(config)]) == 1
    assert "key 'svc' was revoked" in capsys.readouterr().out
    assert main(["route", "chat", "--config", str(config)]) == 1  # still required
