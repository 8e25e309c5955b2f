"""A provider whose base_url is the gateway itself turns one request into an endless loop.

Decided from the addresses as written, without DNS (the compiler does no I/O): the base_url's
port must be the one the gateway listens on, and its host one of the gateway's own — a
loopback name when the gateway listens on loopback, also the host name and the unspecified
address when it listens on all interfaces, else the bind address itself. What this cannot see
(another name for this host, a gateway in a loop with another) the hop header stops at
request time (providers/hops.py).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def points_at_listener(base_url: str, host: str, port: int) -> bool:
    """True when ``base_url`` names the address ``host:port`` the gateway listens on."""
    try:
        parts = urlsplit(base_url)
        target_port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return False
    target = (parts.hostname or "").lower()
    if not target or target_port != port:
        return False
    listen = host.strip("[]").lower()
    if _is_loopback(listen):
        return _is_loopback(target)
    if _is_unspecified(listen):
        return (_is_loopback(target) or _is_unspecified(target)
                or target in (socket.gethostname().lower(), socket.getfqdn().lower()))
    return target == listen or _is_unspecified(target)


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
