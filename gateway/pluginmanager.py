"""Builds the pluggy PluginManager: built-in plugins first, then entry points of group
``gateway``. Entry points load one by one, so one broken plugin cannot hide the others: its
error is kept and reported when a config asks for it.

Two plugins claiming one name, or two plugins adding one provider type, are refused when the
manager is built (PluginConflict names both sources): which one would win is an accident of
installation order, so the gateway does not start on it.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from . import hookspecs
from .logs import get_logger
from .providers.base import Provider

log = get_logger("gateway.plugins")

GROUP = "gateway"
BUILTIN_PREFIX = "builtin:"
# Built-in features, registered through the same hooks as third-party plugins (gateway/builtin/).
# Auth and limits are always part of the chain; each returns None from its hooks when the
# config does not use it. `providers` adds the built-in provider types; `cache` is the
# response cache (in the chain only when some route has the cache on); `frontdoors` serves
# /v1/messages and the other non-OpenAI APIs; `metrics` counts every request for /metrics,
# `traces` exports its spans (observability.traces); `request_log` keeps every request in
# logs.db; `dashboard` serves /dashboard.
DEFAULT_PLUGINS = ("gateway.builtin.auth", "gateway.builtin.limits", "gateway.builtin.providers",
                   "gateway.builtin.cache", "gateway.builtin.frontdoors", "gateway.builtin.files",
                   "gateway.builtin.fine_tuning", "gateway.builtin.metrics", "gateway.builtin.traces",
                   "gateway.builtin.request_log", "gateway.builtin.dashboard")


class PluginConflict(Exception):
    """Two installed plugins claim the same plugin name or provider type."""


class PluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__(GROUP)
        self.add_hookspecs(hookspecs)
        self.broken: dict[str, str] = {}  # entry-point name -> why it failed to load
        self.sources: dict[str, str] = {}  # plugin name -> where it came from, for messages
        self._provider_types: dict[str, type[Provider]] | None = None

    def installed(self) -> list[str]:
        """Names that `plugins:` entries may use."""
        names = {name for name, _ in self.list_name_plugin() if not name.startswith(BUILTIN_PREFIX)}
        return sorted(names | set(self.broken))

    def builtins(self) -> list[str]:
        return [name for name, _ in self.list_name_plugin() if name.startswith(BUILTIN_PREFIX)]

    def add(self, plugin: object, name: str, source: str) -> None:
        """Register ``plugin`` as ``name``; PluginConflict when the name is taken."""
        self.check_free(name, source)
        self.register(plugin, name=name)
        self.sources[name] = source

    def check_free(self, name: str, source: str) -> None:
        """PluginConflict naming both sources when ``name`` is taken already."""
        if name in self.sources:
            raise PluginConflict(
                f"two plugins are named '{name}': {self.sources[name]} and {source}; "
                "uninstall one of them (or rename its entry point)")

    def provider_types(self) -> dict[str, type[Provider]]:
        """Provider types by `type:` name, built-in ones included (register_providers).
        PluginConflict when two plugins add the same name."""
        if self._provider_types is None:
            types: dict[str, type[Provider]] = {}
            owner: dict[str, str] = {}
            for name, _ in self.list_name_plugin():
                for kind, cls in (self.call_one(name, "register_providers") or {}).items():
                    if kind in owner:
                        raise PluginConflict(
                            f"provider type '{kind}' is added by two plugins: "
                            f"{self.sources.get(owner[kind], owner[kind])} and "
                            f"{self.sources.get(name, name)}; uninstall one of them")
                    types[kind], owner[kind] = cls, name
            self._provider_types = types
        return self._provider_types

    def call_one(self, plugin: str, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on one plugin only, through pluggy's hook caller (which passes an
        implementation only the arguments it declares, and is traced like any hook call);
        None when the plugin does not implement the hook."""
        others = [p for name, p in self.list_name_plugin() if name != plugin]
        results = self.subset_hook_caller(hook, remove_plugins=others)(**kwargs)
        return results[0] if results else None


def build_plugin_manager(*, load_entrypoints: bool = True, extra: tuple = ()) -> PluginManager:
    pm = PluginManager()
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.add(module, BUILTIN_PREFIX + module_name.rsplit(".", 1)[-1], f"built-in {module_name}")
    for name, plugin in extra:
        pm.add(plugin, name, _PASSED.format(name))
    if load_entrypoints:
        _load_entrypoints(pm)
    pm.provider_types()  # refuse conflicting provider types now, not at the first config
    return pm


def _load_entrypoints(pm: PluginManager) -> None:
    for ep in entry_points(group=GROUP):
        source = _source(ep)
        if pm.sources.get(ep.name) in (source, _PASSED.format(ep.name)):
            continue  # the same distribution seen twice, or a test passed it in already
        pm.check_free(ep.name, source)  # before loading: a broken twin is a conflict too
        try:
            plugin = ep.load()
        except Exception as exc:  # an installed plugin that cannot load must not break others
            pm.broken[ep.name] = f"{type(exc).__name__}: {exc}"
            pm.sources[ep.name] = source
            log.error("plugin_load_failed", plugin=ep.name, error=pm.broken[ep.name])
            continue
        pm.add(plugin, ep.name, source)


_PASSED = "{} (passed to build_plugin_manager)"


def _source(ep: EntryPoint) -> str:
    dist = f" (distribution {ep.dist.name} {ep.dist.version})" if ep.dist is not None else ""
    return f"entry point '{ep.name} = {ep.value}'{dist}"


@cache
def default_manager() -> PluginManager:
    """The process-wide manager (built lazily, never at import time)."""
    return build_plugin_manager()
