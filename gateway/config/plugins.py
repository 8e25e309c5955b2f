"""The `plugins:` section: which plugins run, in which order, with which config.

Each entry is checked like the rest of the file (an unknown name, a config failing the
plugin's own schema, a plugin that raises while setting up: errors with line and column), and
every plugin is instantiated here, at compile time, so a reload adds, removes, reorders or
reconfigures plugins with the same atomic swap as the routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigError
from ..graph.pipeline import Middleware
from ..graph.plugin_layer import RESPONSE_METHODS, NamedCheck, PluginLayer
from ..hookspecs import (Authenticator, BackgroundTask, MetricsCollector, PluginContext,
                         ReadinessCheck, RequestFinished)
from ..pluginmanager import BUILTIN_PREFIX, PluginManager
from .schema import validate_fragment
from .source import Path, SourceMap
from .suggest import did_you_mean


@dataclass
class CompiledPlugins:
    chain: list[Middleware] = field(default_factory=list)
    checks: list[NamedCheck] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # enabled plugins, in order
    errors: list[ConfigError] = field(default_factory=list)
    authenticator: Authenticator | None = None
    authenticated_by: str = ""  # the plugin that returned it
    authenticated_by_builtin: bool = False
    admin_routes: list[Any] = field(default_factory=list)
    api_routes: list[Any] = field(default_factory=list)
    readiness_checks: list[ReadinessCheck] = field(default_factory=list)
    collectors: list[MetricsCollector] = field(default_factory=list)
    finished: list[tuple[str, RequestFinished]] = field(default_factory=list)  # (plugin, function)
    background: list[BackgroundTask] = field(default_factory=list)


def compile_plugins(pm: PluginManager, entries: list[dict[str, Any]], source: SourceMap,
                    context: PluginContext) -> CompiledPlugins:
    out = CompiledPlugins()
    # Built-ins first (authentication must precede everything), then the list in order.
    for name in pm.builtins():
        _instantiate(pm, name, {}, context, ("plugins",), source, out)
    seen: dict[str, int] = {}
    installed = pm.installed()
    for i, entry in enumerate(entries):
        name, path = entry["name"], ("plugins", i)
        if name in seen:
            out.errors.append(source.error(path + ("name",),
                              f"plugin '{name}' is already listed at plugins[{seen[name]}]"))
            continue
        seen[name] = i
        if name not in installed:
            hint = did_you_mean(name, installed) or (
                f"installed plugins: {', '.join(installed)}" if installed else "no plugin is installed")
            out.errors.append(source.error(
                path + ("name",),
                f"unknown plugin '{name}': no installed package has an entry point '{name}' in group "
                "'gateway'", hint))
            continue
        if name in pm.broken:
            out.errors.append(source.error(path + ("name",),
                              f"plugin '{name}' is installed but failed to load: {pm.broken[name]}"))
            continue
        config = entry.get("config") or {}
        schema = pm.call_one(name, "plugin_config_schema")
        if schema is not None:
            problems = validate_fragment(schema, config, source, path + ("config",))
            if problems:
                out.errors.extend(problems)
                continue
        _instantiate(pm, name, config, context, path, source, out)
    return out


def _instantiate(pm: PluginManager, name: str, config: dict[str, Any], base: PluginContext,
                 path: Path, source: SourceMap, out: CompiledPlugins) -> None:
    public = name.removeprefix(BUILTIN_PREFIX)
    context = replace(base, name=public)
    kwargs: dict[str, Any] = {"config": config, "context": context}
    try:
        before = pm.call_one(name, "request_middleware", **kwargs)
        after = pm.call_one(name, "response_middleware", **kwargs)
        check = pm.call_one(name, "attempt_check", **kwargs)
        headers = pm.call_one(name, "response_headers", **kwargs)
        authenticator = pm.call_one(name, "authenticator", **kwargs)
        admin = pm.call_one(name, "admin_routes", **kwargs)
        api = pm.call_one(name, "api_routes", **kwargs)
        ready = pm.call_one(name, "readiness_check", **kwargs)
        collector = pm.call_one(name, "metrics_collector", **kwargs)
        finished = pm.call_one(name, "request_finished", **kwargs)
        task = pm.call_one(name, "background_task", **kwargs)
    except Exception as exc:  # a plugin's set-up failing (GatewayError too) rejects the config
        out.errors.append(source.error(
            path, f"plugin '{public}' failed to set up: {type(exc).__name__}: {exc}"))
        return
    if authenticator is not None and not _adopt(out, authenticator, public,
                                                name.startswith(BUILTIN_PREFIX), path, source):
        return
    out.admin_routes.extend(admin or ())
    out.api_routes.extend(api or ())
    if ready is not None:
        out.readiness_checks.append(ready)
    if collector is not None:
        out.collectors.append(collector)
    if finished is not None:
        out.finished.append((public, finished))
    if task is not None:
        out.background.append(task)
    if after is None and any(hasattr(before, m) for m in RESPONSE_METHODS):
        after = before  # one object serving both sides (it keeps what it reserved in ctx)
    if before is not None or after is not None or headers is not None:
        out.chain.append(PluginLayer(public, before, after, headers,
                                     builtin=name.startswith(BUILTIN_PREFIX)))
    if check is not None:
        out.checks.append(NamedCheck(public, check))
    if not name.startswith(BUILTIN_PREFIX):
        out.names.append(public)


def _adopt(out: CompiledPlugins, authenticator: Authenticator, plugin: str, builtin: bool, path: Path,
           source: SourceMap) -> bool:
    """A listed plugin's authenticator replaces the built-in one (built-ins are set up
    first); two listed ones are an error."""
    if out.authenticator is not None and not out.authenticated_by_builtin:
        out.errors.append(source.error(
            path, f"plugin '{plugin}' authenticates callers, and so does plugin "
            f"'{out.authenticated_by}': only one may", "remove one of them from plugins:"))
        return False
    out.authenticator, out.authenticated_by = authenticator, plugin
    out.authenticated_by_builtin = builtin
    return True
