"""The peers `make bench-peers` measures beside the gateway: LiteLLM's proxy and Portkey's gateway.

Both are installed under bench/.peers/ (git-ignored) with their ordinary clients: LiteLLM with pip
into its own venv (so nothing of it reaches the project's venv), Portkey with npm. An install that
fails (no network, no node) is reported and the benchmark goes on without that peer.

Installed once; delete bench/.peers/ (or one folder in it) to install the newest versions again.

Portkey 1.15 with the newest @hono/node-server (1.14 and later) answers every streamed request
with 500 ("TypeError: immutable": it appends headers to a fetch() response whose headers are
read-only, which those versions no longer copy). The install pins @hono/node-server to the last
1.13 release, with which Portkey streams as designed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from . import procs

BENCH_DIR = Path(__file__).resolve().parent
PEERS_DIR = BENCH_DIR / ".peers"
LITELLM_VENV = PEERS_DIR / "litellm-venv"
LITELLM_BIN = LITELLM_VENV / "bin" / "litellm"
LITELLM_SPEC = "litellm[proxy]"
PORTKEY_DIR = PEERS_DIR / "portkey"
PORTKEY_PACKAGE = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway"
PORTKEY_SERVER = PORTKEY_PACKAGE / "build" / "start-server.js"
PORTKEY_SPEC = "@portkey-ai/gateway"
HONO_NODE_SERVER = "1.13.8"
INSTALL_TIMEOUT_S = 900


def _shown(path: Path) -> str:
    return str(path.relative_to(BENCH_DIR.parent)) if path.is_relative_to(BENCH_DIR.parent) else str(path)


def litellm_missing() -> str | None:
    if LITELLM_BIN.exists():
        return None
    return f"LiteLLM is not installed ({_shown(LITELLM_BIN)} is missing; `make bench-peers` installs it)"


def portkey_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (Debian: apt-get install -y nodejs npm)"
    if PORTKEY_SERVER.exists():
        return None
    return f"Portkey is not installed ({_shown(PORTKEY_SERVER)} is missing; `make bench-peers` installs it)"


def _run(name: str, argv: list[str], log: Path, cwd: Path | None = None) -> str | None:
    """Run one install step in its own process group, appending to log; None, or why it failed."""
    proc = procs.Proc(name, argv, log, cwd=cwd, append=True)
    try:
        proc.popen.wait(INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"`{' '.join(argv)}` did not finish within {INSTALL_TIMEOUT_S} s"
    finally:
        proc.stop()
    if proc.popen.returncode != 0:
        tail = "\n    ".join(line for line in proc.log_tail(8).splitlines() if not line.startswith("WARNING: Location"))
        return f"`{' '.join(argv[-3:])}` exited {proc.popen.returncode}; the end of {log}:\n    {tail}"
    return None


def install_litellm() -> str | None:
    if litellm_missing() is None:
        return None
    PEERS_DIR.mkdir(exist_ok=True)
    log = PEERS_DIR / "litellm-install.log"
    log.write_text("")
    pip = str(LITELLM_VENV / "bin" / "pip")
    return (
        _run("venv", [sys.executable, "-m", "venv", "--clear", str(LITELLM_VENV)], log)
        or _run("pip", [pip, "install", "--quiet", "--upgrade", "pip"], log)
        or _run("pip", [pip, "install", "--quiet", LITELLM_SPEC], log)
        or litellm_missing()
    )


def _portkey_to_install() -> str | None:
    """Why Portkey must be (re)installed: missing, or installed without the @hono/node-server pin."""
    missing = portkey_missing()
    if missing is not None or versions().get("@hono/node-server") == HONO_NODE_SERVER:
        return missing
    return f"@hono/node-server is not pinned to {HONO_NODE_SERVER}"


def install_portkey() -> str | None:
    if _portkey_to_install() is None:
        return None
    if shutil.which("npm") is None:
        return "npm is not installed (Debian: apt-get install -y nodejs npm)"
    PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
    log = PEERS_DIR / "portkey-install.log"
    log.write_text("")
    package = {"name": "bench-portkey", "private": True, "overrides": {"@hono/node-server": HONO_NODE_SERVER}}
    (PORTKEY_DIR / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    return (
        _run("npm", ["npm", "install", "--no-audit", "--no-fund", PORTKEY_SPEC], log, cwd=PORTKEY_DIR)
        or portkey_missing()
    )


INSTALLERS: dict[str, tuple[Callable[[], str | None], Callable[[], str | None]]] = {
    "litellm": (litellm_missing, install_litellm),
    "portkey": (_portkey_to_install, install_portkey),
}


def install(names: list[str], say: Callable[[str], None]) -> dict[str, str]:
    """Install the named peers that are missing; return {name: why it failed} for those that did."""
    failed = {}
    for name in names:
        missing, installer = INSTALLERS[name]
        if missing() is None:
            continue
        say(f"installing {name} under {_shown(PEERS_DIR)}/ (once; may take minutes)")
        try:
            error = installer()
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error:
            failed[name] = error
            say(f"bench: could not install {name}; going on without it.\n    {error}")
    return failed


def versions() -> dict[str, str]:
    """Installed peer versions, for the results' metadata."""
    found = {}
    for dist in sorted(LITELLM_VENV.glob("lib/python*/site-packages/litellm-*.dist-info")):
        found["litellm"] = dist.name.removeprefix("litellm-").removesuffix(".dist-info")
    for name, package in (("portkey", PORTKEY_PACKAGE), ("@hono/node-server", PORTKEY_DIR / "node_modules/@hono/node-server")):
        try:
            found[name] = json.loads((package / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            pass
    if "portkey" in found and shutil.which("node"):
        found["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return found
