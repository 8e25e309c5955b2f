"""`gateway validate`: compiler-style errors, exit codes, every shipped config valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .cli_runner import run_cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "configs").glob("*.yaml"))


def run(*args: str) -> subprocess.CompletedProcess:
    """`gateway ARGS` in a new process (for serve, which sets up the process's logging)."""
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT,
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
    result = run_cli("validate", str(path))
    assert result.code == 0, result.out + result.err
    assert "OK" in result.out
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
    result = run_cli("validate", str(good), str(bad), str(broken))
    assert result.code == 1
    assert result.out.splitlines() == [f"{good}: OK (1 routes, 1 providers)"]
    lines = result.err.splitlines()  # errors go to stderr
    assert f"{bad}:6:24: $.routes.a.target.provider: unknown provider 'dd' (did you mean 'd'?)" in lines
    assert f"{bad}:8:34: $.routes.b.fallback.targets[0].route: unknown route 'nope'" in lines
    assert any(line.startswith(f"{broken}:3:1: YAML syntax error") for line in lines)
    assert "2 of 3 file(s) invalid" in result.err


def test_validate_all_good_exits_zero(tmp_path: Path):
    """Exit status 0 when every file is valid."""
    path = tmp_path / "ok.yaml"
    path.write_text("version: 1\n")
    assert run_cli("validate", str(path)).code == 0


def test_unset_variable_is_an_error_naming_it(tmp_path: Path, monkeypatch):
    """${VAR} without a default and unset: an error with the variable and its line."""
    path = tmp_path / "env.yaml"
    path.write_text("version: 1\nproviders:\n  o: {type: openai, api_key: '${SURELY_UNSET_VAR_X}'}\n")
    monkeypatch.delenv("SURELY_UNSET_VAR_X", raising=False)
    result = run_cli("validate", str(path))
    assert result.code == 1
    assert f"{path}:3:30: $.providers.o.api_key: environment variable ${{SURELY_UNSET_VAR_X}} is not set" in result.err


def test_missing_file(tmp_path: Path):
    """A file that does not exist is an error, not a traceback."""
    result = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert result.code == 1 and result.out == ""
    assert f"{tmp_path / 'nope.yaml'}: no such config file" in result.err
    assert "Traceback" not in result.err


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


# -- one CLI: options, stderr, missing files (issue 12 item 11) ----------------------------------

ENVIRONMENTS = """\
version: 1
providers: {demo: {type: mock}}
routes:
  chat: {target: {provider: demo, model: m}}
  debug: {target: {provider: demo, model: echo}}
environments:
  prod:
    routes: {debug: null}
"""


def gateway_main(*args) -> tuple[int, str, str]:
    """`gateway ARGS` in this process: (status, stdout, stderr)."""
    result = run_cli(*args)
    return result.code, result.out, result.err


def test_validate_takes_env_and_format_json(tmp_path: Path):
    """`validate --env NAME --format json` like the other commands: the overlay is applied and
    the verdict is one JSON document on stdout."""
    import json

    path = tmp_path / "gateway.yaml"
    path.write_text(ENVIRONMENTS)
    code, out, err = gateway_main("validate", path, "--env", "prod", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True and report["files"][0]["routes"] == 1
    code, out, _ = gateway_main("validate", path, "--format", "json")
    assert json.loads(out)["files"][0]["routes"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nroutes: {a: {target: {provider: nope, model: m}}}\n")
    code, out, err = gateway_main("validate", bad, "--format", "json")
    assert code == 1 and err == ""
    (error,) = json.loads(out)["files"][0]["errors"]
    assert (error["line"], error["column"]) == (2, 33) and "unknown provider" in error["message"]


def subcommands():
    """Every (name, parser) of the gateway command, sub-subcommands included."""
    import argparse

    from gateway.cli import build_parser

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield f"{prefix} {name}".strip(), sub
                    yield from walk(sub, f"{prefix} {name}")

    return list(walk(build_parser(), ""))


def test_one_format_spelling():
    """Every --format is {human,json}; `table`, the old spelling of two commands, still works."""
    formats = {name: next(a for a in p._actions if "--format" in a.option_strings)
               for name, p in subcommands()
               if any("--format" in a.option_strings for a in p._actions)}
    assert {"validate", "history", "diff", "route", "test", "keys list", "usage",
            "secrets list", "rollback"} <= set(formats)
    assert {name: tuple(a.choices) for name, a in formats.items()} == {
        name: ("human", "json") for name in formats}


def test_old_table_spelling_is_a_hidden_alias(tmp_path: Path):
    path = tmp_path / "gateway.yaml"
    path.write_text(ENVIRONMENTS)
    for command in (("keys", "list"), ("usage",)):
        code, out, err = gateway_main(*command, "--config", path, "--format", "table")
        assert code == 0, err
        assert out.split()[0] == ("NAME" if command[0] == "keys" else "REQUESTS")


READ_ONLY = [("validate",), ("history",), ("diff",), ("route", "chat"), ("test",),
             ("keys", "list"), ("usage",), ("secrets", "list")]


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_read_only_commands_without_a_config_say_so(tmp_path: Path, monkeypatch, command):
    """Run where there is no gateway.yaml: a message on stderr, exit 1 or 2, nothing created."""
    monkeypatch.chdir(tmp_path)
    code, out, err = gateway_main(*command)
    assert code in (1, 2) and out == ""
    expected = "no cases file" if command == ("test",) else "gateway.yaml: no such config file"
    assert expected in err
    assert list(tmp_path.iterdir()) == []


def test_route_suggests_names_for_an_unknown_route(tmp_path: Path):
    path = tmp_path / "gateway.yaml"
    path.write_text(ENVIRONMENTS)
    code, out, _ = gateway_main("route", "chta", "-c", path)
    assert code == 1 and "no route 'chta' (did you mean 'chat'?)" in out
    code, out, _ = gateway_main("route", "CHAT", "-c", path)
    assert "did you mean 'chat'? (route names are case-sensitive)" in out
    code, out, _ = gateway_main("route", "zzz", "-c", path)
    assert out.splitlines()[-1] == "  routes in this config: chat, debug"


def test_test_without_a_cases_file_prints_an_example_that_works(tmp_path: Path, monkeypatch):
    """`gateway test` with no routing-tests.yaml says so and shows one; that one passes against
    the config `gateway init` writes."""
    monkeypatch.chdir(tmp_path)
    assert gateway_main("init")[0] == 0
    code, out, err = gateway_main("test")
    assert code == 2 and out == ""
    assert "no cases file: ./routing-tests.yaml does not exist" in err
    example = err.split("for example:\n\n", 1)[1]
    (tmp_path / "routing-tests.yaml").write_text(example)
    code, out, err = gateway_main("test")
    assert code == 0, out + err
    assert "2 passed, 0 failed" in out
