"""Shared helpers of the vault tests: keys, environments and the CLI (in this process)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from subprocess import CompletedProcess

import nacl.utils

from ..cli_runner import run_cli

ROOT = Path(__file__).resolve().parents[2]
MASTER_VARS = ("GATEWAY_MASTER_KEY", "GATEWAY_MASTER_PASSPHRASE", "GATEWAY_NEW_MASTER_PASSPHRASE")


def new_key() -> str:
    return base64.b64encode(nacl.utils.random(32)).decode()


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without any master-key variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in MASTER_VARS}
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> CompletedProcess:
    """`gateway ARGS` in this process, with ``env`` as the whole environment (default: this
    one without any master-key variable) while it runs."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env if env is not None else clean_env())
    try:
        result = run_cli(*args, stdin=stdin)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return CompletedProcess(args, result.code, result.out, result.err)


def files_containing(folder: Path, needle: str) -> list[str]:
    """Every file under ``folder`` whose bytes contain ``needle``."""
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]
