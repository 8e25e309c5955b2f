"""The bind check: a gateway that listens beyond loopback needs virtual keys and an admin token.

Applied at start (``check_bind``: the gateway refuses to start) and at every reload
(``bind_errors``: the config is rejected and the last good one keeps serving), so no hot
reload can open a gateway that start-up would have refused.
"""

from __future__ import annotations

import ipaddress

from ..errors import ConfigError
from ..graph.graph import RoutingGraph

_KEYS = "virtual keys (keys: in the config, or `gateway keys create`)"
_TOKEN = "server.admin_token"


class StartupError(Exception):
    """The gateway cannot start; the message says why and what to do."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def missing_protection(graph: RoutingGraph, host: str) -> list[tuple[tuple, str]]:
    """What ``graph`` lacks to be served on ``host``: (config path, what) pairs, [] if safe.
    Whether keys are required is the authenticator's answer (for the built-in one, keys
    issued by the key store count, revoked ones included: they keep keys required)."""
    if is_loopback(host):
        return []
    missing: list[tuple[tuple[str, ...], str]] = []
    if not graph.requires_key:
        missing.append((("keys",), _KEYS))
    if not graph.settings.admin_token:
        missing.append((("server", "admin_token"), _TOKEN))
    return missing


def check_bind(graph: RoutingGraph, host: str) -> None:
    """Start-up: raise StartupError when ``graph`` may not be served on ``host``."""
    missing = [what for _path, what in missing_protection(graph, host)]
    if missing:
        raise StartupError(
            f"refusing to listen on {host}: without {' and '.join(missing)} anyone who can reach "
            "it could use the gateway. Configure them, or listen on 127.0.0.1."
        )


def bind_errors(graph: RoutingGraph, host: str, source) -> list[ConfigError]:
    """Reload: one ConfigError (with the position in the new file) per missing protection."""
    return [
        source.error(path, f"the gateway listens on {host}: a config without {what} would let "
                     "anyone who can reach it use the gateway",
                     "keep it in the config, or restart the gateway on 127.0.0.1")
        for path, what in missing_protection(graph, host)
    ]
