"""Shared helpers of the vault tests: keys, environments and the CLI in a subprocess."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import nacl.utils

ROOT = Path(__file__).resolve().parents[2]
MASTER_VARS = ("GATEWAY_MASTER_KEY", "GATEWAY_MASTER_PASSPHRASE", "GATEWAY_NEW_MASTER_PASSPHRASE")


def new_key() -> str:
    return base64.b64encode(nacl.utils.random(32)).decode()


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without any master-key variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in MASTER_VARS}
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = "",
        cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd,
                          env=env if env is not None else clean_env(), input=stdin,
                          capture_output=True, text=True, timeout=60)


def files_containing(folder: Path, needle: str) -> list[str]:
    """Every file under ``folder`` whose bytes contain ``needle``."""
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]
