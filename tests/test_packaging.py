"""A wheel install works without the source tree: `gateway init` finds its templates, writes
the editor schema header, and every template validates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Run the installed package in process for the per-template loop (one interpreter start
# instead of one per template keeps the test well under 30 s).
INIT_EACH = """
import sys
from gateway.cli import main
from gateway.cli.init import templates
for name in templates():
    assert main(["init", "--template", name, "--output", f"{sys.argv[1]}/{name}.yaml"]) == 0, name
"""


def run(*argv, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done


@pytest.mark.packaging
def test_wheel_ships_templates_and_schema(tmp_path):
    """Build the wheel (offline, from a copy of the sources), install it into a fresh venv
    whose dependencies come from the test venv, and use it from an empty folder."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("gateway", "examples"):  # gateway/templates links to examples/configs
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GATEWAY_"))}
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--no-index", str(src), "-w", tmp_path / "dist", cwd=tmp_path, env=env)
    wheel = next((tmp_path / "dist").glob("bodhi_gateway-*.whl"))

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
        "--no-index", wheel, cwd=tmp_path, env=env)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path, env=env).stdout.strip())
    # Dependencies (and the first-party plugins some templates use) from the test venv, after
    # the fresh venv's own site-packages, so `gateway` is the wheel's.
    (site / "zz_test_venv.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")

    work = tmp_path / "work"
    work.mkdir()
    where = run(python, "-c", "import gateway; print(gateway.__file__)", cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv)
    gateway = venv / "bin" / "gateway"
    listing = run(gateway, "init", "--list", cwd=work, env=env).stdout
    names = [line.split()[0] for line in listing.splitlines()]
    shipped = sorted(p.stem for p in (ROOT / "examples" / "configs").glob("*.yaml"))
    assert names == shipped

    run(python, "-c", INIT_EACH, work, cwd=work, env=env)
    written = sorted(work.glob("*.yaml"))
    assert [p.stem for p in written] == shipped
    for path in written:
        header = path.read_text().splitlines()[0]
        assert header.startswith("# yaml-language-server: $schema="), path
        schema = (work / header.split("=", 1)[1]).resolve()
        assert schema.is_file() and schema.is_relative_to(venv), header
    checked = run(gateway, "validate", *written, cwd=work, env=env).stdout
    assert checked.count(": OK") == len(shipped), checked
