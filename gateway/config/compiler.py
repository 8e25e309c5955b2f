"""Validated config data -> RoutingGraph. No event loop (it runs in a worker thread), and it never
touches the live graph; its I/O is reading: the config file and its includes (compile_file), the
vault for secret:NAME values, and whatever a plugin reads while it sets up.

All semantic errors are collected (unknown providers and routes with "did you mean", cycles
between routes, bad regular expressions, duplicate key hashes, ...), each with its position,
and raised together as ConfigErrors. Nothing here runs per request: defaults are merged,
durations parsed and conditions compiled once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from types import MappingProxyType
from typing import Any, Callable, Hashable, Mapping, TypeVar

import orjson

from ..errors import ConfigError, ConfigErrors
from ..graph.conditions import ConditionError, compile_condition, condition_fields, field_getter
from ..graph.graph import KeySpec, Route, RoutingGraph, ServerSettings
from ..graph.nodes import (
    CanaryNode,
    ConditionalNode,
    DeadlineNode,
    FallbackNode,
    LoadBalanceNode,
    RouteRefNode,
    Rule,
    TargetNode,
)
from ..graph.pipeline import build_pipeline
from ..graph.stream_recovery import RecoveryPolicy, StreamRecoveryNode, targets_of
from ..graph.policies import (
    DEFAULT_BREAKER_ON,
    DEFAULT_FALLBACK_ON,
    DEFAULT_RETRY_ON,
    BreakerPolicy,
    RetryBudget,
    RetryPolicy,
    StatusMatcher,
)
from ..graph.plugin_layer import AttemptChecks
from ..hookspecs import PluginContext, TargetRef
from ..pluginmanager import PluginManager, default_manager
from ..providers.base import ClientPool, Provider, ProviderSpec, Timeouts
from ..providers.microbatch import EmbeddingBatcher
from ..providers.scrub import Scrubber
from ..state.canary import CanaryState
from ..state.redis_counters import client_installed as redis_installed
from ..state.registry import StateRegistry
from ..state.retry_budget import RetryBudgetState
from ..state.target import ProviderHealth, TargetState
from ..types import CONFIG_NODE_KINDS, Node
from ..units import seconds, size_bytes
from . import schema
from .alerts import compile_alerts
from .plugins import compile_plugins
from .request_log import conflicts as request_log_conflicts, request_log_settings
from .redact import secret_values
from .self_address import points_at_listener
from .userinfo import mask_userinfo
from .secrets import resolve_secrets  # secret:NAME -> vault value, in a copy of the data
from .loader import LoadedConfig, load_bytes, load_file
from .source import Path, SourceMap, format_path
from .suggest import did_you_mean

CACHE_TTL = (60.0, 90 * 86400.0)  # seconds: the shortest and longest cache ttl
# Provider types whose own batch API the gateway can use (gateway/files/native_batches.py).
NATIVE_BATCH_TYPES = ("openai", "openai-compatible", "anthropic", "bedrock")
# Provider types whose API has OpenAI's /files and /fine_tuning/jobs (fine_tuning: true).
FINE_TUNING_TYPES = frozenset({"openai", "openai-compatible"})
ACCOUNT_OBJECT_TYPES = FINE_TUNING_TYPES | {"azure-openai"}  # file ids, vector stores
MAX_BATCH_WAIT = 1.0  # seconds: the longest a route's batch.max_wait may hold a request

T = TypeVar("T")


# Settings the version-1 schema accepts that this build does not act on yet. Each gets a
# warning, so nobody believes a limit or a breaker protects them when it does not.
# ("*" matches any key at that level.)
INACTIVE: tuple[tuple[str, ...], ...] = ()


@dataclass
class Runtime:
    """Per-process resources that compiled graphs refer to and that outlive any one graph."""

    clients: ClientPool = field(default_factory=ClientPool)
    state: StateRegistry = field(default_factory=StateRegistry)
    plugins: PluginManager = field(default_factory=default_manager)
    # Where `gateway serve` listens when the command line overrides server.host/port: a
    # provider pointing there is the gateway itself (self_address.py).
    listen_host: str | None = None
    listen_port: int | None = None


def compile_file(path: str, *, version: int = 0, runtime: Runtime | None = None,
                 env: Mapping[str, str] | None = None,
                 environment: str | None = None) -> RoutingGraph:
    return compile_loaded(load_file(path, env, environment), version=version, runtime=runtime)


def compile_bytes(raw: bytes, path: str, *, version: int = 0, runtime: Runtime | None = None,
                  env: Mapping[str, str] | None = None,
                  environment: str | None = None) -> RoutingGraph:
    return compile_loaded(load_bytes(raw, path, env, environment), version=version,
                          runtime=runtime)


def compile_loaded(loaded: LoadedConfig, *, version: int = 0,
                   runtime: Runtime | None = None) -> RoutingGraph:
    errors = schema.validate(loaded.data, loaded.source)
    if errors:
        raise ConfigErrors(errors)
    return _Compiler(loaded, runtime or Runtime()).build(version)


class _Compiler:
    def __init__(self, loaded: LoadedConfig, runtime: Runtime):
        self.loaded = loaded
        self.data: dict[str, Any] = loaded.data
        self.source: SourceMap = loaded.source
        self.runtime = runtime
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigError] = []  # reported, but the config is still accepted
        self.routes_data: dict[str, Any] = self.data.get("routes") or {}
        self.defaults: dict[str, Any] = self.data.get("defaults") or {}
        self.providers: dict[str, Provider] = {}
        self.provider_timeouts: dict[str, Any] = {}
        self.routes: dict[str, Route] = {}
        self.compiling: list[str] = []
        self.failed: set[str] = set()
        self.state_keys: set[Hashable] = set()
        self.checks = AttemptChecks()  # filled once plugins are set up, after the routes
        # Per route: the targets it names itself, and the routes it refers to.
        self.direct_targets: dict[str, set[TargetRef]] = {}
        self.route_refs: dict[str, set[str]] = {}
        self.scrubber = Scrubber()

    def error(self, path: Path, message: str, hint: str | None = None, *,
              at_key: bool = False) -> None:
        self.errors.append(self.source.error(path, message, hint, at_key=at_key))

    # -- top level -------------------------------------------------------------------------

    def build(self, version: int) -> RoutingGraph:
        settings = self._settings()
        if settings.state.startswith(("redis://", "rediss://")) and not redis_installed():
            self.error(("server", "state"), "server.state is a Redis URL, but the redis package "
                       "is not installed", "install it: pip install 'bodhi-gateway[redis]'")
        self.data, secret_errors = resolve_secrets(self.data, self.source, settings.data_dir)
        self.errors.extend(secret_errors)
        self.scrubber = Scrubber.of(secret_values(self.data))
        self._providers((self.runtime.listen_host or settings.host,
                         settings.port if self.runtime.listen_port is None
                         else self.runtime.listen_port))
        keys = self._keys()
        for name in self.routes_data:  # routes first: plugins are handed them compiled
            self._route(name)
        plugins = compile_plugins(
            self.runtime.plugins, self.data.get("plugins") or [], self.source,
            PluginContext("", self.loaded.path, settings.data_dir, self.data,
                          _TrackedState(self.runtime.state, self.state_keys),
                          MappingProxyType(keys), routes=MappingProxyType(dict(self.routes)),
                          targets=MappingProxyType(self._reachable_targets())),
        )
        self.errors.extend(plugins.errors)
        self.checks.checks = tuple(plugins.checks)
        self._check_cache()
        self._check_traces()
        for path, message in request_log_conflicts(self.data.get("observability")):
            self.error(path, message)
        self._warn_inactive()
        if self.errors:
            raise ConfigErrors(self.errors)
        observability = self.data.get("observability") or {}
        chain = plugins.chain
        return RoutingGraph(
            version=version,
            sha256=self.loaded.sha256,
            loaded_at=time.time(),
            path=self.loaded.path,
            text=self.loaded.text,
            routes=MappingProxyType(dict(self.routes)),
            providers=MappingProxyType(dict(self.providers)),
            keys_by_hash=MappingProxyType(keys),
            settings=settings,
            middleware=tuple(chain),
            log_requests=request_log_settings(observability).enabled,
            authenticator=plugins.authenticator,
            identify=plugins.authenticator.identify if plugins.authenticator else None,
            admin_routes=tuple(plugins.admin_routes),
            api_routes=tuple(plugins.api_routes),
            readiness_checks=tuple(plugins.readiness_checks),
            collectors=tuple(plugins.collectors),
            request_finished=tuple(plugins.finished),
            background_tasks=tuple(plugins.background),
            record_bodies=any(getattr(fn, "wants_bodies", False) for _, fn in plugins.finished),
            metrics_enabled=observability.get("metrics", True),
            trace_ratio=(float(observability["traces"].get("sample_ratio", 1.0))
                         if observability.get("traces") else None),
            alerts=compile_alerts(observability),
            request_timeout=(seconds(self.defaults["request_timeout"])
                             if "request_timeout" in self.defaults else None),
            handler=build_pipeline(chain),
            scrubber=self.scrubber,
            state_keys=frozenset(self.state_keys),
            warnings=tuple(self.warnings),
            route_specs=MappingProxyType(
                {n: orjson.dumps(s, option=orjson.OPT_SORT_KEYS) for n, s in self.routes_data.items()}
            ),
        )

    def _reachable_targets(self) -> dict[str, tuple[TargetRef, ...]]:
        """Per compiled route, every target it can reach, route references followed."""
        def reach(name: str, seen: set[str]) -> set[TargetRef]:
            found = set(self.direct_targets.get(name, ()))
            for ref in self.route_refs.get(name, ()):
                if ref not in seen:
                    seen.add(ref)
                    found |= reach(ref, seen)
            return found

        return {name: tuple(sorted(reach(name, {name}), key=lambda t: t.label))
                for name in self.routes}

    def _settings(self) -> ServerSettings:
        server = self.data.get("server") or {}
        base = os.path.dirname(os.path.abspath(self.loaded.path))
        data_dir = os.path.join(base, server.get("data_dir", ".gateway"))
        return ServerSettings(
            host=server.get("host", "127.0.0.1"),
            port=server.get("port", 8080),
            data_dir=data_dir,
            admin_token=server.get("admin_token", "") or "",
            max_body=size_bytes(server.get("max_body", "20MB")),
            workers=server.get("workers", 1),
            state=server.get("state", "sqlite"),
            engine=server.get("engine", "uvicorn"),
            log_level=server.get("log_level", "info"),
            allowed_hosts=tuple(server.get("allowed_hosts") or ()),
            name=server.get("name", ""),
            drain_timeout=seconds(server.get("drain_timeout", "10s")),
            header_timeout=seconds(server.get("header_timeout", "10s")),
            body_timeout=seconds(server.get("body_timeout", "30s")),
            max_connections=server.get("max_connections", 1000),
        )

    # -- providers -------------------------------------------------------------------------

    def _providers(self, listen: tuple[str, int]) -> None:
        types = self.runtime.plugins.provider_types()  # built-in ones come from a plugin too
        for name, spec in (self.data.get("providers") or {}).items():
            path = ("providers", name)
            kind = spec["type"]
            if kind not in types:
                self.error(path + ("type",), f"unknown provider type '{kind}'",
                           did_you_mean(kind, types) or "a plugin may add it: is it installed?")
                continue
            cls = types[kind]
            base_url = spec.get("base_url") or cls.default_base_url(kind)
            if not base_url:
                self.error(path, f"provider '{name}' of type {kind} needs base_url")
                continue
            if points_at_listener(base_url, *listen):
                self.error(path + (("base_url",) if "base_url" in spec else ("type",)),
                           f"{mask_userinfo(base_url)} is this gateway itself (it listens on "
                           f"{listen[0]}:{listen[1]}): every request would come back here",
                           "point base_url at the upstream, or serve on another port")
                continue
            api_key = spec.get("api_key") or None
            if cls.needs_key(kind) and not api_key and "base_url" not in spec:
                self.warnings.append(self.source.error(
                    path + (("api_key",) if "api_key" in spec else ()),
                    f"provider '{name}' ({kind}) has no api_key: its requests will be refused "
                    "upstream", "set the environment variable the config refers to",
                    severity="warning",
                ))
            options = {
                k: (seconds(v) if k in ("latency", "chunk_delay") else v)
                for k, v in spec.items()
                if k not in ("type", "api_key", "base_url", "headers", "max_connections", "timeout")
            }
            problems = cls.validate_options(kind, options)
            for problem in problems:
                self.error(path, f"provider '{name}' ({kind}): {problem}")
            if problems:
                continue
            pspec = ProviderSpec(
                name=name,
                type=kind,
                base_url=base_url,
                api_key=api_key,
                headers=MappingProxyType(dict(spec.get("headers") or {})),
                max_connections=spec.get("max_connections", 1024),
                options=MappingProxyType(options),
            )
            provider = self.providers[name] = types[kind](pspec, self.runtime.clients)
            self.provider_timeouts[name] = spec.get("timeout")
            if spec.get("passthrough") and provider.passthrough_headers() is None:
                self.error(path + ("passthrough",), f"provider '{name}' ({kind}) cannot be "
                           "passed through: its requests are signed per call",
                           "remove passthrough: true")
            if spec.get("fine_tuning") and kind not in FINE_TUNING_TYPES:
                self.error(path + ("fine_tuning",), f"provider '{name}' ({kind}) has no "
                           "fine-tuning API the gateway can use: fine_tuning: true needs type "
                           "openai or openai-compatible", "remove fine_tuning: true")
            if spec.get("account_objects") and kind not in ACCOUNT_OBJECT_TYPES:
                self.error(path + ("account_objects",), f"provider '{name}' ({kind}): "
                           "account_objects is for types openai, openai-compatible and "
                           "azure-openai", "remove account_objects")
            if spec.get("file_uris") and kind != "gemini":
                self.error(path + ("file_uris",), f"provider '{name}' ({kind}) reads no file URIs "
                           "of its account: file_uris is for type gemini", "remove file_uris")
            if spec.get("s3_images") and kind != "bedrock":
                self.error(path + ("s3_images",), f"provider '{name}' ({kind}) reads no s3:// "
                           "images: s3_images is for type bedrock", "remove s3_images")
            if spec.get("batch") == "native" and kind not in NATIVE_BATCH_TYPES:
                self.error(path + ("batch",), f"provider '{name}' ({kind}) has no batch API the "
                           "gateway can use: batch: native needs type openai, "
                           "openai-compatible, anthropic or bedrock",
                           "remove it: the gateway runs its batches line by line")

    # -- routes and nodes ------------------------------------------------------------------

    def _route(self, name: str) -> Route | None:
        if name in self.routes:
            return self.routes[name]
        if name in self.failed:
            return None
        spec = self.routes_data[name]
        path: Path = ("routes", name)
        self.compiling.append(name)
        node = self._node(spec, path, name)
        self.compiling.pop()
        if node is None:
            self.failed.add(name)
            return None
        wait = (spec.get("batch") or {}).get("max_wait")
        if wait is not None and seconds(wait) > MAX_BATCH_WAIT:
            self.error(path + ("batch", "max_wait"), f"batch max_wait must be at most 1s, not {wait}",
                       "a few milliseconds fill a batch under load: try 10ms")
        if (spec.get("stream_recovery") or {}).get("mode") == "continue":
            node = self._stream_recovery(node, spec["stream_recovery"], path + ("stream_recovery",))
        route = Route(name, format_path(path), node, spec.get("description"),
                      self._retry_budget(name, spec.get("retry_budget")))
        self.routes[name] = route
        return route

    def _stream_recovery(self, node: Node, spec: dict[str, Any], path: Path) -> Node:
        """The route's node wrapped so that a broken chat stream is continued by one of the
        targets it reaches (graph/stream_recovery.py)."""
        stall = spec.get("stall_timeout")
        policy = RecoveryPolicy(max_restarts=spec.get("max_restarts", 1),
                                stall_timeout=None if stall is None else seconds(stall),
                                continue_with=spec.get("continue_with", "auto"))
        return StreamRecoveryNode(format_path(path), node, policy, targets_of(node))

    def _node(self, spec: dict[str, Any], path: Path, route: str) -> Node | None:
        kind = next(k for k in CONFIG_NODE_KINDS if k in spec)
        node = self._node_of_kind(kind, spec[kind], path + (kind,), route)
        timeout = spec[kind].get("timeout") if isinstance(spec[kind], dict) and kind != "target" else None
        if node is None or timeout is None:
            return node
        return DeadlineNode(format_path(path + (kind, "timeout")), seconds(timeout), node)

    def _node_of_kind(self, kind: str, value: Any, here: Path, route: str) -> Node | None:
        if kind == "target":
            return self._target(value, here)
        if kind == "route":
            return self._route_ref(value, here)
        if kind == "fallback":
            children = self._children(value["targets"], here + ("targets",), route)
            on = StatusMatcher.of(value.get("on_status", DEFAULT_FALLBACK_ON))
            return FallbackNode(format_path(here), children, on) if children is not None else None
        if kind == "loadbalance":
            return self._loadbalance(value, here, route)
        if kind == "conditional":
            return self._conditional(value, here, route)
        return self._canary(value, here, route)

    def _children(self, specs: list[Any], path: Path, route: str) -> tuple[Node, ...] | None:
        nodes = [self._node(s, path + (i,), route) for i, s in enumerate(specs)]
        built = tuple(n for n in nodes if n is not None)
        return built if len(built) == len(nodes) else None

    def _route_ref(self, name: str, path: Path) -> Node | None:
        if name not in self.routes_data:
            self.error(path, f"unknown route '{name}'", did_you_mean(name, self.routes_data))
            return None
        if name in self.compiling:
            cycle = " -> ".join(self.compiling[self.compiling.index(name):] + [name])
            self.error(path, f"routes reference each other in a cycle: {cycle}")
            return None
        self.route_refs.setdefault(self.compiling[-1], set()).add(name)
        target = self._route(name)
        return RouteRefNode(format_path(path), name, target.node) if target else None

    def _target(self, spec: dict[str, Any], path: Path) -> Node | None:
        provider = self.providers.get(spec["provider"])
        if provider is None:
            declared = (self.data.get("providers") or {})
            if spec["provider"] in declared:
                return None  # the provider itself is in error; that error is reported
            self.error(path + ("provider",), f"unknown provider '{spec['provider']}'",
                       did_you_mean(spec["provider"], declared))
            return None
        self.direct_targets.setdefault(self.compiling[-1], set()).add(
            TargetRef(provider.name, provider.spec.type, spec["model"]))
        identity = ("target", provider.name, provider.spec.base_url, spec["model"])
        self.state_keys.update((identity, ("health", provider.name)))
        label = f"{provider.name}/{spec['model']}"
        return TargetNode(
            path=format_path(path),
            provider=provider,
            model=spec["model"],
            timeouts=self._timeouts(spec.get("timeout"), self.provider_timeouts.get(provider.name)),
            retry=self._retry(spec.get("retry")),
            breaker=self._breaker(spec.get("circuit_breaker")),
            state=self.runtime.state.acquire(identity, lambda: TargetState(label)),
            health=self.runtime.state.acquire(("health", provider.name), ProviderHealth),
            override_params=_freeze(spec.get("override_params") or {}),
            checks=self.checks,
            scrubber=self.scrubber,
            batcher=self._batcher(provider, spec["model"]),
        )

    def _batcher(self, provider: Provider, model: str) -> EmbeddingBatcher | None:
        """The micro-batcher of a target that the route being compiled names itself, when
        that route has ``batch:``. Shared by the targets and routes that name the same
        provider and model with the same policy, and kept across reloads that keep them."""
        spec = (self.routes_data.get(self.compiling[-1]) or {}).get("batch")
        if spec is None:
            return None
        max_size, max_wait = spec.get("max_size", 64), seconds(spec.get("max_wait", "10ms"))
        key = ("embed_batch", provider.name, provider.spec.base_url, model, max_size, max_wait)
        self.state_keys.add(key)
        return self.runtime.state.acquire(key, lambda: EmbeddingBatcher(max_size, max_wait))

    def _timeouts(self, target: Any, provider: Any) -> Timeouts:
        merged: dict[str, float] = {}
        for level in (self.defaults.get("timeout"), provider, target):
            if level is None:
                continue
            if isinstance(level, dict):
                merged.update({k: seconds(v) for k, v in level.items()})
            else:
                merged = {**{k: v for k, v in merged.items() if k in ("connect", "idle")},
                          "total": seconds(level)}
        total = merged.get("total", 60.0)
        return Timeouts(
            connect=min(merged.get("connect", 10.0), total),
            first_byte=min(merged.get("first_byte", total), total),
            idle=merged.get("idle", total),
            total=total,
        )

    def _retry(self, target: dict[str, Any] | None) -> RetryPolicy:
        spec = {**(self.defaults.get("retry") or {}), **(target or {})}
        return RetryPolicy(
            attempts=spec.get("attempts", 2),
            on=StatusMatcher.of(spec.get("on_status", DEFAULT_RETRY_ON)),
            backoff=spec.get("backoff", "exponential"),
            base=seconds(spec.get("base", "500ms")),
            max=seconds(spec.get("max", "8s")),
            jitter=spec.get("jitter", True),
            respect_retry_after=spec.get("respect_retry_after", True),
        )

    def _retry_budget(self, route: str, own: dict[str, Any] | None) -> RetryBudget | None:
        defaults = self.defaults.get("retry_budget")
        if own is None and defaults is None:
            return None
        spec = {**(defaults or {}), **(own or {})}
        key = ("retry_budget", route)
        self.state_keys.add(key)
        return RetryBudget(
            ratio=spec.get("ratio", 0.2),
            window=seconds(spec.get("window", "10s")),
            min_retries=spec.get("min_retries", 3),
            state=self.runtime.state.acquire(key, RetryBudgetState),
        )

    def _breaker(self, target: dict[str, Any] | None) -> BreakerPolicy:
        spec = {**(self.defaults.get("circuit_breaker") or {}), **(target or {})}
        return BreakerPolicy(
            enabled=spec.get("enabled", True),
            failure_threshold=spec.get("failure_threshold", 5),
            failure_rate=spec.get("failure_rate", 0.5),
            min_requests=spec.get("min_requests", 10),
            window=seconds(spec.get("window", "60s")),
            cooldown=seconds(spec.get("cooldown", "30s")),
            half_open_requests=spec.get("half_open_requests", 1),
            on=StatusMatcher.of(spec.get("on_status", DEFAULT_BREAKER_ON)),
        )

    def _loadbalance(self, spec: dict[str, Any], path: Path, route: str) -> Node | None:
        algorithm = spec.get("algorithm", "weighted")
        items = spec["targets"]
        children = self._children(items, path + ("targets",), route)
        if children is None:
            return None
        weights = tuple(float(item.get("weight", 1)) for item in items)
        if not any(weights):
            self.error(path + ("targets",), "loadbalance requires at least one target with "
                       "weight > 0", "weight: 0 drains a target; give another one a weight",
                       at_key=True)
            return None
        key = ("loadbalance", route, format_path(path))
        self.state_keys.add(key)
        return LoadBalanceNode(
            path=format_path(path),
            algorithm=algorithm,
            nodes=children,
            weights=weights,
            cumulative=tuple(itertools.accumulate(weights)),
            cursor=self.runtime.state.acquire(key, itertools.count),
        )

    def _conditional(self, spec: dict[str, Any], path: Path, route: str) -> Node | None:
        rules, ok = [], True
        for i, rule in enumerate(spec["rules"]):
            rule_path = path + ("rules", i)
            try:
                when = compile_condition(rule["when"])
            except ConditionError as exc:
                self.error(rule_path + ("when",) + exc.path, exc.message)
                ok = False
                continue
            then = self._node(rule["then"], rule_path + ("then",), route)
            if then is None:
                ok = False
                continue
            rules.append(Rule(format_path(rule_path), when, then, condition_fields(rule["when"])))
        default = None
        if "default" in spec:
            default = self._node(spec["default"], path + ("default",), route)
            ok = ok and default is not None
        if not ok:
            return None
        return ConditionalNode(format_path(path), route, tuple(rules), default)

    def _canary(self, spec: dict[str, Any], path: Path, route: str) -> Node | None:
        stable = self._node(spec["stable"], path + ("stable",), route)
        canary = self._node(spec["canary"], path + ("canary",), route)
        if stable is None or canary is None:
            return None
        rollback = spec.get("rollback") or {}
        # Counters and a rollback survive reloads that leave this canary as it is.
        digest = hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        key = ("canary", route, format_path(path), digest)
        self.state_keys.add(key)
        return CanaryNode(
            path=format_path(path),
            percent=float(spec["percent"]),
            stable=stable,
            canary=canary,
            sticky=field_getter(spec.get("sticky", "metadata.user")),
            state=self.runtime.state.acquire(key, lambda: CanaryState(f"{route} {format_path(path)}")),
            rollback_error_rate=rollback.get("error_rate"),
            rollback_min_requests=rollback.get("min_requests", 50),
        )

    # -- keys and cross references ---------------------------------------------------------

    def _keys(self) -> dict[str, KeySpec]:
        by_hash: dict[str, KeySpec] = {}
        for name, spec in (self.data.get("keys") or {}).items():
            path = ("keys", name)
            digest = spec["key_sha256"]
            if digest in by_hash:
                self.error(path + ("key_sha256",),
                           f"key '{name}' has the same key_sha256 as key '{by_hash[digest].name}'")
                continue
            routes = spec.get("routes")
            allowed = None if routes is None or "*" in routes else frozenset(routes)
            for i, route in enumerate(routes or ()):
                if route != "*" and route not in self.routes_data:
                    self.error(path + ("routes", i), f"unknown route '{route}'",
                               did_you_mean(route, self.routes_data))
            by_hash[digest] = KeySpec(
                name=name,
                sha256=digest,
                routes=allowed,
                metadata=MappingProxyType(dict(spec.get("metadata") or {})),
                expires_at=self._expiry(spec.get("expires"), path + ("expires",)),
                limits=MappingProxyType(dict(spec.get("limits") or {})),
                budget=MappingProxyType(dict(spec["budget"])) if "budget" in spec else None,
            )
        return by_hash

    def _expiry(self, value: str | None, path: Path) -> float | None:
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            try:
                moment = datetime.combine(date.fromisoformat(value), datetime.min.time())
            except ValueError:
                self.error(path, f"'{value}' is not an ISO 8601 date or date-time",
                           "write it as 2027-01-31 or 2027-01-31T12:00:00Z")
                return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()

    def _warn_inactive(self) -> None:
        for pattern in INACTIVE:
            for path in _expand(self.data, pattern):
                self._inactive(path)

    def _inactive(self, path: Path) -> None:
        self.warnings.append(self.source.error(
            path, "accepted by the schema but not active in this build yet: it has no effect",
            at_key=True, severity="warning"))

    def _check_cache(self) -> None:
        sections = [(("cache",), self.data.get("cache"))] + [
            (("routes", name, "cache"), route.get("cache"))
            for name, route in self.routes_data.items() if isinstance(route, dict)]
        for path, section in sections:
            ttl = section.get("ttl") if isinstance(section, dict) else None
            if ttl is not None and not CACHE_TTL[0] <= seconds(ttl) <= CACHE_TTL[1]:
                self.error(path + ("ttl",), f"cache ttl must be from 60s to 90d, not {ttl}",
                           "write a duration in that range, such as 1h or 7d")
        top = self.data.get("cache") or {}
        for path, section in sections:
            if not isinstance(section, dict):
                continue
            route = (section.get("semantic") or {}).get("route")
            if route is not None and route not in self.routes_data:
                self.error(path + ("semantic", "route"), f"unknown route '{route}'",
                           did_you_mean(route, self.routes_data))
            if section.get("mode") != "semantic":
                continue
            if route is None and not (top.get("semantic") or {}).get("route"):
                self.error(path + ("mode",), "cache mode semantic needs semantic.route: the "
                           "embeddings route that turns prompts into vectors")
            if importlib.util.find_spec("numpy") is None:
                self.error(path + ("mode",), "cache mode semantic needs numpy: install "
                           "'bodhi-gateway[semantic]'")

    def _check_traces(self) -> None:
        traces = (self.data.get("observability") or {}).get("traces")
        if traces and not otel_installed():
            self.error(("observability", "traces"), "observability.traces needs the OpenTelemetry "
                       "packages, which are not installed", "pip install 'bodhi-gateway[otel]' "
                       "(or remove observability.traces)")


def otel_installed() -> bool:
    """Whether the otel extra (OpenTelemetry SDK and OTLP/HTTP exporter) is installed."""
    try:
        return importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is not None
    except ModuleNotFoundError:  # no opentelemetry package at all
        return False


class _TrackedState:
    """The state registry as plugins see it: what they acquire is kept across the swap."""

    def __init__(self, state: StateRegistry, used: set[Any]):
        self._state, self._used = state, used

    def acquire(self, key: Hashable, factory: Callable[[], T]) -> T:
        self._used.add(key)
        return self._state.acquire(key, factory)


def _expand(data: Any, pattern: Path) -> list[Path]:
    """The paths in ``data`` that match ``pattern`` ("*" matches any mapping key)."""
    paths: list[Path] = [()]
    for part in pattern:
        nxt: list[Path] = []
        for path in paths:
            node = _at(data, path)
            if not isinstance(node, dict):
                continue
            keys = list(node) if part == "*" else [part] if part in node else []
            nxt.extend(path + (k,) for k in keys)
        paths = nxt
    return paths


def _at(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value
