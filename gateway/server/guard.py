"""Requests refused before any endpoint sees them: what a browser can be made to send.

- ``Host`` not in ``server.allowed_hosts`` (besides loopback names and the bind address): 421.
  A DNS-rebinding page reaches a loopback gateway under its own name; it cannot forge Host.
- A POST body that is not ``application/json`` (``multipart/form-data`` for uploads): 415.
  Browsers send text/plain and form bodies cross-site without asking (no CORS preflight).
- An ``/admin/*`` call whose ``Origin`` is not the gateway's own: 403.
- A multipart POST (/v1/files, /v1/audio/transcriptions) from a page of another origin
  (``Origin``, or ``Sec-Fetch-Site: cross-site``): 403. A form needs no preflight, so without
  keys any web page could upload, or have a transcription run with the provider's key.

``/healthz`` and ``/readyz`` are never refused: probes address the gateway by whatever name
the platform uses (a pod IP, say).
"""

from __future__ import annotations

from ..errors import GatewayError
from ..graph.graph import RoutingGraph
from ..logs import get_logger
from .errors import gateway_error_response
from .reload import Reloader

log = get_logger("gateway.guard")

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
PROBES = frozenset({"/healthz", "/readyz"})
MULTIPART = frozenset({"/v1/audio/transcriptions", "/v1/files"})  # every other POST body is JSON


def split_host(value: str) -> tuple[str, str | None]:
    """``name[:port]`` (``[v6]:port`` or a bare IPv6 address too) as (lower-case name, port)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        name, _, port = value.partition(":")
        return name.rstrip("."), port
    return value.rstrip("."), None


class AllowedHosts:
    """The names (any port) and name:port pairs a request's Host may carry; "*": any."""

    def __init__(self, entries):
        self.any = "*" in entries
        self.names: set[str] = set()
        self.pairs: set[tuple[str, str]] = set()
        for entry in entries:
            name, port = split_host(entry)
            if port is None:
                self.names.add(name)
            else:
                self.pairs.add((name, port))

    def permits(self, host: str) -> bool:
        if self.any:
            return True
        name, port = split_host(host)
        return name in self.names or (name, port or "") in self.pairs

    @classmethod
    def of(cls, graph: RoutingGraph, bind_host: str | None) -> "AllowedHosts":
        bound = bind_host or graph.settings.host
        return cls((*LOOPBACK_NAMES, bound, *graph.settings.allowed_hosts))


class RequestGuard:
    """ASGI wrapper in front of the whole app (the fast path included)."""

    def __init__(self, app, reloader: Reloader):
        self.app = app
        self.reloader = reloader
        self._graph: RoutingGraph | None = None
        self._allowed = AllowedHosts(())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in PROBES:
            refused = self.refusal(scope)
            if refused is not None:
                log.info("request_refused", status=refused.status, code=refused.code,
                         method=scope["method"], path=scope["path"])
                await gateway_error_response(refused, {})(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def allowed(self) -> AllowedHosts:
        graph = self.reloader.holder.current
        if graph is not self._graph:  # once per config, not per request
            self._allowed = AllowedHosts.of(graph, self.reloader.bind_host)
            self._graph = graph
        return self._allowed

    def refusal(self, scope) -> GatewayError | None:
        host = origin = content_type = fetch_site = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                has_body = value.strip() not in (b"", b"0")
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"sec-fetch-site":
                fetch_site = value.decode("latin-1").strip().lower()
        if host is not None and not self.allowed().permits(host):
            return GatewayError(
                421, f"this gateway does not answer to the host name {host!r}: add it to "
                "server.allowed_hosts (or address the gateway as 127.0.0.1)",
                type="invalid_request_error", code="host_not_allowed")
        path = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):  # served under a prefix: the app's own path
            path = path[len(root):]
        if scope["method"] == "POST" and has_body:
            wanted = "multipart/form-data" if path in MULTIPART else "application/json"
            given = (content_type or "").partition(";")[0].strip().lower()
            if given != wanted:
                return GatewayError(
                    415, f"POST {path} takes a {wanted} body, not {given or 'an untyped one'}: "
                    f"send `Content-Type: {wanted}`",
                    type="invalid_request_error", code="unsupported_media_type")
        if scope["method"] == "POST" and path in MULTIPART and (
                fetch_site == "cross-site"
                or origin is not None and not _same_origin(origin, host)):
            # A form post: a page on any site can send one without asking (no preflight).
            return GatewayError(
                403, f"POST {path} from a page of another origin ({origin or 'cross-site'}) "
                "is refused: a web page may not upload or transcribe through this gateway",
                type="permission_error", code="cross_origin_post")
        if origin is not None and path.startswith("/admin/") and not _same_origin(origin, host):
            return GatewayError(
                403, f"admin calls from another origin ({origin}) are refused",
                type="permission_error", code="cross_origin_admin")
        return None


def _same_origin(origin: str, host: str | None) -> bool:
    """The Origin's host[:port] is the Host the request was sent to (any scheme: a proxy may
    end TLS in front of the gateway)."""
    scheme, sep, authority = origin.partition("://")
    return bool(sep) and host is not None and authority.rstrip("/").lower() == host.lower()
