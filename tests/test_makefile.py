"""`make run` and `make test` on a fresh clone, as `make -n` plans them (nothing is installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plan(clone: Path, target: str, path: str | None = None) -> list[str]:
    """What `make -n TARGET` would run; ``path``: the PATH the recipes see."""
    # A clean environment: under `make test` the outer make's MAKELEVEL/MAKEFLAGS would make
    # this one print "Entering/Leaving directory" lines around the plan.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    if path is not None:
        env["PATH"] = path
    done = subprocess.run([shutil.which("make"), "-n", "--no-print-directory", target],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def fresh_clone(tmp_path: Path) -> Path:
    """The files the Makefile's rules depend on, without any .venv."""
    for rel in ["Makefile", "pyproject.toml", "tests/plugins/tiny/pyproject.toml",
                *(str(p.relative_to(ROOT)) for p in ROOT.glob("plugins/*/pyproject.toml"))]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    return tmp_path


def test_make_run_says_what_it_installs_and_leaves_out_test_packages(tmp_path):
    """The first `make run` announces the venv and the install, and installs the gateway (with
    the redis extra, which shipped examples use) and its plugins only: no test extra, and no
    opt-in engine (the default one, uvicorn, is a core dependency)."""
    lines = plan(fresh_clone(tmp_path), "run")
    text = "\n".join(lines)
    assert 'echo "creating .venv (first run only)"' in text
    assert 'echo "installing bodhi-gateway (first run only, ~1 min)"' in text
    installs = [line for line in lines if " install " in line and "-e '.[redis]'" in line]
    assert installs and all("test" not in line and "granian" not in line for line in installs)
    assert lines[-1].endswith("gateway serve --config gateway.yaml")


def test_make_test_installs_the_test_extra(tmp_path):
    """`make test` on a fresh clone installs what the suite needs, then runs it."""
    text = "\n".join(plan(fresh_clone(tmp_path), "test"))
    assert "-e '.[test,granian]' -e tests/plugins/tiny" in text
    assert text.index("installing bodhi-gateway") < text.index("[test,granian]") < text.index(
        "pytest -q")


def test_make_test_installs_redis_server_only_when_it_is_missing(tmp_path):
    """`make test` runs `make deps` (apt-get install redis-server, chromium) only when
    redis-server or chromium is not on PATH, so a fresh machine (CI) gets them and a ready one
    is not asked for root."""
    clone = fresh_clone(tmp_path)
    deps = plan(clone, "deps", path="/nonexistent")
    assert any("apt-get install -y redis-server" in line for line in deps)
    assert any("apt-get install -y chromium" in line for line in deps)
    bin_with_redis = tmp_path / "bin"
    bin_with_redis.mkdir()
    for tool in ("redis-server", "chromium"):
        (bin_with_redis / tool).write_text("#!/bin/sh\n")
        (bin_with_redis / tool).chmod(0o755)
    ready = "\n".join(plan(clone, "test", path=str(bin_with_redis)))
    assert "apt-get" not in ready and "pytest -q" in ready
    missing = "\n".join(plan(clone, "test", path="/nonexistent"))
    assert "apt-get install -y redis-server" in missing
    assert missing.index("apt-get install") < missing.index("pytest -q")


def test_make_lint_validates_then_runs_ruff_and_mypy(tmp_path):
    """`make lint` installs the lint extra and the optional ones mypy reads the types of,
    validates the shipped configs, then runs ruff and mypy (settings in pyproject.toml)."""
    lines = plan(fresh_clone(tmp_path), "lint")
    text = "\n".join(lines)
    assert "-e '.[lint,redis,semantic,granian,otel]'" in text
    assert text.index("[lint,") < text.index("gateway validate") < text.index("ruff check") \
        < text.index("mypy")
    assert lines[-1].endswith("/mypy")


def test_ci_runs_the_tests_then_the_linters():
    """.ci/run ends with `make test` then `make lint`."""
    steps = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.startswith("make ")]
    assert steps == ["make test", "make lint"]
