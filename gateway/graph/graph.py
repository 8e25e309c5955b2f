"""RoutingGraph: one compiled, immutable config. The server holds exactly one at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Hashable, Mapping

from ..errors import ConfigError
from ..events import AlertWebhook
from ..keys.store import StoredKey
from ..providers.base import Provider
from ..providers.scrub import Scrubber
from ..types import Handler, Middleware, Node
from .policies import RetryBudget

if TYPE_CHECKING:
    from ..hookspecs import (Authenticator, BackgroundTask, MetricsCollector, ReadinessCheck,
                             RequestFinished)


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    path: str
    node: Node
    description: str | None = None
    retry_budget: RetryBudget | None = None  # when the config sets one


@dataclass(frozen=True, slots=True)
class KeySpec:
    """A virtual key declared in the config (only its hash is known)."""

    name: str
    sha256: str
    routes: frozenset[str] | None  # None: every route
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    expires_at: float | None = None  # unix time
    limits: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    budget: Mapping[str, Any] | None = None

    def allows(self, route: str) -> bool:
        return self.routes is None or route in self.routes

    @classmethod
    def of_stored(cls, stored: StoredKey) -> "KeySpec":
        """A key created at run time (the key store), in the same form as a declared one."""
        return cls(
            name=stored.name,
            sha256=stored.sha256,
            routes=None if stored.routes is None else frozenset(stored.routes),
            metadata=MappingProxyType(dict(stored.metadata)),
            expires_at=stored.expires_at,
            limits=MappingProxyType(dict(stored.limits)),
            budget=None if stored.budget is None else MappingProxyType(dict(stored.budget)),
        )


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = ".gateway"
    admin_token: str = ""
    max_body: int = 20 * 1024 * 1024
    workers: int = 1
    state: str = "sqlite"
    engine: str = "uvicorn"  # gateway.server.engines.DEFAULT_ENGINE
    log_level: str = "info"
    allowed_hosts: tuple[str, ...] = ()  # Host names besides loopback and the bind address
    name: str = ""  # server.name: the config identity of stored versions ("": the file's path)
    drain_timeout: float = 10.0  # SIGTERM: how long requests in flight may still run
    header_timeout: float = 10.0  # a connection must send a whole request head within it
    body_timeout: float = 30.0  # ... and no pause longer than this in an unfinished body
    max_connections: int = 1000  # open client connections per worker; more get 503


@dataclass(frozen=True)
class RoutingGraph:
    version: int
    sha256: str
    loaded_at: float
    path: str
    text: str
    routes: Mapping[str, Route]
    providers: Mapping[str, Provider]
    keys_by_hash: Mapping[str, KeySpec]
    settings: ServerSettings
    middleware: tuple[Middleware, ...]
    handler: Handler
    log_requests: bool = True
    # Who is calling: the authenticator a plugin returned (hookspecs.Authenticator), and its
    # identify method, looked up once here rather than per request. None: nobody authenticates.
    authenticator: Authenticator | None = None
    identify: Callable[[Mapping[str, str]], KeySpec | None] | None = None
    # What plugins contribute besides middleware (hookspecs): routes under /admin and at the
    # root, /readyz checks and /metrics collectors.
    admin_routes: tuple[Any, ...] = ()  # Starlette routes
    api_routes: tuple[Any, ...] = ()  # Starlette routes at the root (/v1/files, /dashboard)
    readiness_checks: tuple[ReadinessCheck, ...] = ()
    collectors: tuple[MetricsCollector, ...] = ()
    # (plugin name, function) called with each request's RequestRecord when it is over, and
    # whether any of them asked for the bodies (hookspecs.RequestFinished).
    request_finished: tuple[tuple[str, RequestFinished], ...] = ()
    background_tasks: tuple[BackgroundTask, ...] = ()  # run by the server while this is live
    record_bodies: bool = False
    metrics_enabled: bool = True
    trace_ratio: float | None = None  # observability.traces' sample_ratio; None: traces off
    alerts: tuple[AlertWebhook, ...] = ()  # observability.alerts (server/alerts.py sends them)
    request_timeout: float | None = None  # longest a request may take (defaults.request_timeout)
    state_keys: frozenset[Hashable] = field(default_factory=frozenset)
    warnings: tuple[ConfigError, ...] = ()  # problems that do not reject the config
    # Canonical JSON of each route's config, to say which routes a reload changed.
    route_specs: Mapping[str, bytes] = field(default_factory=dict)
    # Every configured credential: scrubbed from upstream error text (providers/scrub.py).
    scrubber: Scrubber = field(default_factory=Scrubber)

    @property
    def requires_key(self) -> bool:
        """Whether callers need a key (keys in the config, or issued at run time)."""
        return self.authenticator is not None and self.authenticator.required()

    def client_keys(self) -> set[tuple[object, ...]]:
        return {p.pool_key() for p in self.providers.values()}
