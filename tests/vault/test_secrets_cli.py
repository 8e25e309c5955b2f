"""`gateway secrets`: values only from stdin or a hidden prompt, never echoed, never in argv."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.cli import secrets as secrets_cli
from gateway.vault import Vault, WrongKeyError

from .helpers import ROOT, clean_env, cli, files_containing, new_key

SECRET = "sk-live-7f3a9c0e5b1d4a2f8e6c"
CONFIG = """\
version: 1
server:
  data_dir: state
providers:
  up: {type: openai, api_key: secret:upstream}
routes:
  a: {target: {provider: up, model: m}}
"""


def test_set_from_stdin_never_exposes_the_value(tmp_path: Path):
    """Piped on stdin: stored, absent from argv, environ, outputs and every file but encrypted."""
    env = clean_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "secrets", "set", "upstream", "--data-dir",
         str(tmp_path / "data")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30  # until the command runs: look at what `ps` would show
    while b"secrets\0set" not in (cmdline := Path(f"/proc/{proc.pid}/cmdline").read_bytes()):
        assert time.monotonic() < deadline and proc.poll() is None, cmdline
        time.sleep(0.01)
    environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
    out, err = proc.communicate(SECRET.encode() + b"\n", timeout=60)
    assert proc.returncode == 0, err
    assert b"secrets\0set\0upstream" in cmdline
    assert SECRET.encode() not in cmdline + environ
    assert SECRET.encode() not in out + err
    assert b"secret 'upstream' stored in" in out and b"secret:upstream" in out
    assert b"created a new master key" in err
    assert files_containing(tmp_path, SECRET) == []
    assert Vault(str(tmp_path / "data"), {}).get("upstream") == SECRET  # newline dropped
    listed = cli("secrets", "list", "--data-dir", str(tmp_path / "data"))
    as_json = cli("secrets", "list", "--format", "json", "--data-dir", str(tmp_path / "data"))
    assert listed.returncode == as_json.returncode == 0
    assert "upstream" in listed.stdout and SECRET not in listed.stdout + as_json.stdout
    entry = json.loads(as_json.stdout)["secrets"][0]
    assert set(entry) == {"name", "created_at", "updated_at"} and entry["name"] == "upstream"


def test_a_value_on_the_command_line_is_refused_without_echo(tmp_path: Path):
    """`gateway secrets set NAME VALUE` stores nothing and does not repeat VALUE."""
    result = cli("secrets", "set", "upstream", SECRET, "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "never taken from the command line" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert not (tmp_path / "vault.json").exists()


@pytest.mark.parametrize("stdin", ["", "\n", "\r\n\n"])
def test_empty_stdin_is_refused(tmp_path: Path, stdin: str):
    """An empty pipe (a failed command before it) stores nothing."""
    result = cli("secrets", "set", "upstream", "--data-dir", str(tmp_path), stdin=stdin)
    assert result.returncode == 1 and "refusing to store an empty value" in result.stderr
    assert not (tmp_path / "vault.json").exists()


def test_prompt_reads_twice_with_getpass(monkeypatch):
    """On a terminal the value is typed twice at a hidden prompt; a mismatch stores nothing."""
    answers = iter([SECRET, SECRET, "one", "two", ""])
    prompts = []
    monkeypatch.setattr(sys, "stdin", type("Tty", (io.StringIO,), {"isatty": lambda self: True})())
    monkeypatch.setattr(secrets_cli.getpass, "getpass",
                        lambda prompt="": prompts.append(prompt) or next(answers))
    assert secrets_cli.read_value("upstream") == SECRET
    assert "hidden" in prompts[0]
    with pytest.raises(ValueError, match="differ"):
        secrets_cli.read_value("upstream")
    with pytest.raises(ValueError, match="empty value"):
        secrets_cli.read_value("upstream")


def test_config_locates_the_vault(tmp_path: Path):
    """--config finds server.data_dir relative to the config file; --data-dir overrides it."""
    (tmp_path / "gw").mkdir()
    config = tmp_path / "gw" / "gateway.yaml"
    config.write_text(CONFIG)
    result = cli("secrets", "set", "upstream", "--config", str(config), stdin=SECRET)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "gw" / "state" / "vault.json").exists()
    assert (tmp_path / "gw" / "state" / "master.key").exists()
    listed = cli("secrets", "list", "--config", str(config))
    assert str(tmp_path / "gw" / "state" / "vault.json") in listed.stdout
    validate = cli("validate", str(config))
    assert validate.returncode == 0, validate.stdout
    other = cli("secrets", "list", "--config", str(config), "--data-dir", str(tmp_path / "x"))
    assert "no vault at" in other.stdout


def test_delete_suggests_and_warns_about_references(tmp_path: Path):
    """Deleting an unknown name suggests one; deleting a referenced one warns."""
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    cli("secrets", "set", "upstream", "--config", str(config), stdin=SECRET)
    typo = cli("secrets", "delete", "upstrem", "--config", str(config))
    assert typo.returncode == 1 and "did you mean 'upstream'?" in typo.stderr
    done = cli("secrets", "delete", "upstream", "--config", str(config))
    assert done.returncode == 0 and "deleted" in done.stdout
    assert "still refers to secret:upstream" in done.stderr
    assert "unknown secret 'upstream'" in cli("validate", str(config)).stderr


def test_rotate_master_env_mode_prints_the_key_once(tmp_path: Path):
    """stdout holds the new key alone, once; stderr says what to do; only the new key opens."""
    old = new_key()
    env = clean_env(GATEWAY_MASTER_KEY=old)
    cli("secrets", "set", "upstream", "--data-dir", str(tmp_path), env=env, stdin=SECRET)
    result = cli("secrets", "rotate-master", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and len(base64.b64decode(lines[0])) == 32
    assert lines[0] not in result.stderr and lines[0] != old
    assert "Set GATEWAY_MASTER_KEY to it" in result.stderr and "ONCE" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": lines[0]}).get("upstream") == SECRET
    with pytest.raises(WrongKeyError):
        Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": old}).get("upstream")
    again = cli("secrets", "rotate-master", "--data-dir", str(tmp_path), env=env)
    assert again.returncode == 1 and again.stdout == ""
    assert "was GATEWAY_MASTER_KEY changed?" in again.stderr and "Traceback" not in again.stderr


def test_rotate_master_key_file_mode(tmp_path: Path):
    """Key-file mode writes a new 0600 key file and prints no key."""
    cli("secrets", "set", "upstream", "--data-dir", str(tmp_path), stdin=SECRET)
    before = (tmp_path / "master.key").read_text()
    result = cli("secrets", "rotate-master", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    after = (tmp_path / "master.key").read_text()
    assert after != before and after.strip() not in result.stdout + result.stderr
    assert os.stat(tmp_path / "master.key").st_mode & 0o777 == 0o600
    assert Vault(str(tmp_path), {}).get("upstream") == SECRET


def test_rotate_master_passphrase_mode_needs_a_new_passphrase(tmp_path: Path):
    """Refused without GATEWAY_NEW_MASTER_PASSPHRASE; done with it."""
    env = clean_env(GATEWAY_MASTER_PASSPHRASE="first long passphrase")
    cli("secrets", "set", "upstream", "--data-dir", str(tmp_path), env=env, stdin=SECRET)
    refused = cli("secrets", "rotate-master", "--data-dir", str(tmp_path), env=env)
    assert refused.returncode == 1 and "GATEWAY_NEW_MASTER_PASSPHRASE" in refused.stderr
    env["GATEWAY_NEW_MASTER_PASSPHRASE"] = "second long passphrase"
    done = cli("secrets", "rotate-master", "--data-dir", str(tmp_path), env=env)
    assert done.returncode == 0, done.stderr
    assert "second long passphrase" not in done.stdout + done.stderr
    new_env = {"GATEWAY_MASTER_PASSPHRASE": "second long passphrase"}
    assert Vault(str(tmp_path), new_env).get("upstream") == SECRET


def test_secrets_without_an_action_prints_usage():
    """`gateway secrets` alone lists the actions and exits 2."""
    result = cli("secrets")
    assert result.returncode == 2
    assert all(a in result.stderr for a in ("set", "list", "delete", "rotate-master"))
