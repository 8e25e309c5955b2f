"""`gateway validate`: compiler-style errors, exit codes, every shipped config valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "configs").glob("*.yaml"))


def run(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_examples_exist():
    """There is one example config per feature."""
    names = {p.stem for p in EXAMPLES}
    assert {"minimal", "fallback", "loadbalance", "conditional", "canary",
            "retries-timeouts", "local-models", "virtual-keys", "override-params",
            "limits-budgets", "reliability", "native-providers", "multimodal", "redis-replicas",
            "environments", "plugin-pii-redact", "plugin-output-guard"} <= names


@pytest.mark.parametrize("path", [ROOT / "gateway.yaml", *EXAMPLES], ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path):
    """Every shipped config passes `gateway validate` and names its schema for editors."""
    result = run("validate", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    schema = (path.parent / first.split("=", 1)[1]).resolve()
    assert schema.is_file()


def test_validate_reports_every_error_with_position(tmp_path: Path):
    """All errors of all files, as FILE:LINE:COL: message, and exit status 1."""
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\nproviders: {d: {type: mock}}\nroutes: {a: {target: {provider: d, model: m}}}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\n"
        "providers:\n"
        "  d: {type: mock}\n"
        "routes:\n"
        "  a:\n"
        "    target: {provider: dd, model: m}\n"
        "  b:\n"
        "    fallback: {targets: [{route: nope}]}\n"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nroutes: [\n")
    result = run("validate", str(good), str(bad), str(broken))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"{good}: OK (1 routes, 1 providers)" in lines
    assert f"{bad}:6:24: $.routes.a.target.provider: unknown provider 'dd' (did you mean 'd'?)" in lines
    assert f"{bad}:8:34: $.routes.b.fallback.targets[0].route: unknown route 'nope'" in lines
    assert any(line.startswith(f"{broken}:3:1: YAML syntax error") for line in lines)
    assert "2 of 3 file(s) invalid" in result.stderr


def test_validate_all_good_exits_zero(tmp_path: Path):
    """Exit status 0 when every file is valid."""
    path = tmp_path / "ok.yaml"
    path.write_text("version: 1\n")
    assert run("validate", str(path)).returncode == 0


def test_unset_variable_is_an_error_naming_it(tmp_path: Path):
    """${VAR} without a default and unset: an error with the variable and its line."""
    path = tmp_path / "env.yaml"
    path.write_text("version: 1\nproviders:\n  o: {type: openai, api_key: '${SURELY_UNSET_VAR_X}'}\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "SURELY_UNSET_VAR_X"}
    result = run("validate", str(path), env=env)
    assert result.returncode == 1
    assert f"{path}:3:30: $.providers.o.api_key: environment variable ${{SURELY_UNSET_VAR_X}} is not set" in result.stdout


def test_missing_file(tmp_path: Path):
    """A file that does not exist is an error, not a traceback."""
    result = run("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "cannot read config" in result.stdout
    assert "Traceback" not in result.stderr


def test_serve_refuses_invalid_config(tmp_path: Path):
    """`gateway serve` on a broken file prints the errors and exits 1 instead of serving."""
    path = tmp_path / "gateway.yaml"
    path.write_text("version: 1\nroutes:\n  a: {target: {provider: nope, model: m}}\n")
    result = run("serve", "--config", str(path), "--port", "1")
    assert result.returncode == 1
    assert f"{path}:3:26: $.routes.a.target.provider: unknown provider 'nope'" in result.stderr


def test_serve_refuses_public_bind_without_keys(tmp_path: Path):
    """Listening beyond loopback without keys and an admin token is refused at start."""
    path = tmp_path / "gateway.yaml"
    path.write_text("version: 1\nserver: {host: 0.0.0.0}\n")
    result = run("serve", "--config", str(path), "--port", "1")
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "server.admin_token" in result.stderr
