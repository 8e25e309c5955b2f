"""Fixtures for the gitops tests: the CLI in-process, recognisable secrets, git repositories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from ..cli_runner import Result, run_cli

# Values that must never appear in any output: an API key, an admin token, a literal header.
SECRETS = {
    "OPENAI_API_KEY": "sk-live-SECRET-openai-4f9a2c81",
    "OPENAI_API_KEY_V2": "sk-live-SECRET-rotated-77d0e3",
    "GATEWAY_ADMIN_TOKEN": "adm-SECRET-token-5b1e90",
}
LITERAL_SECRET = "literal-SECRET-header-c0ffee"
ALL_SECRETS = [*SECRETS.values(), LITERAL_SECRET]


def assert_no_secret(*texts: str) -> None:
    """None of the secret values appears in any of ``texts``."""
    for text in texts:
        for secret in ALL_SECRETS:
            assert secret not in text, f"secret {secret[:12]}... leaked in:\n{text}"


@pytest.fixture
def secrets(monkeypatch) -> dict[str, str]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GATEWAY_ENV", raising=False)
    return SECRETS


@pytest.fixture
def cli(secrets) -> Callable[..., Result]:
    """Run `gateway ARGS` in this process; every output is checked for secrets."""

    def run(*args: str) -> Result:
        result = run_cli(*args)
        assert_no_secret(result.out, result.err)
        return result

    return run


def run_gateway(*args: str, cwd: Path | None = None, env: dict | None = None) -> Result:
    """Run `gateway ARGS` in a subprocess (for tests beside a running server)."""
    done = subprocess.run([sys.executable, "-m", "gateway", *map(str, args)], cwd=cwd,
                          env={**os.environ, **SECRETS, **(env or {})}, capture_output=True,
                          text=True, timeout=60)
    assert_no_secret(done.stdout, done.stderr)
    return Result(done.returncode, done.stdout, done.stderr)


class GitRepo:
    def __init__(self, path: Path):
        self.path = path
        self.git("init", "-q", ".")
        self.git("config", "user.email", "test@example.com")
        self.git("config", "user.name", "Test")
        self.git("config", "commit.gpgsign", "false")

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", *args], cwd=self.path, capture_output=True, text=True,
                              check=True, timeout=30)
        return done.stdout.strip()

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path)
