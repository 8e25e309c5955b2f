"""Builds the pluggy PluginManager: built-in plugins first, then entry points of group
``gateway``. Entry points load one by one, so one broken plugin cannot hide the others: its
error is kept and reported when a config asks for it.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .logs import get_logger

log = get_logger("gateway.plugins")

GROUP = "gateway"
BUILTIN_PREFIX = "builtin:"
# Built-in features, registered through the same hooks as third-party plugins. They are always
# part of the chain; each returns None from its hooks when the config does not use it.
DEFAULT_PLUGINS = ("gateway.middleware.auth", "gateway.middleware.limits")


class PluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__(GROUP)
        self.add_hookspecs(hookspecs)
        self.broken: dict[str, str] = {}  # entry-point name -> why it failed to load

    def installed(self) -> list[str]:
        """Names that `plugins:` entries may use."""
        names = {name for name, _ in self.list_name_plugin() if not name.startswith(BUILTIN_PREFIX)}
        return sorted(names | set(self.broken))

    def builtins(self) -> list[str]:
        return [name for name, _ in self.list_name_plugin() if name.startswith(BUILTIN_PREFIX)]

    def provider_types(self) -> dict[str, type]:
        """Provider types that installed plugins add (register_providers)."""
        types: dict[str, type] = {}
        for contributed in self.hook.register_providers():
            types.update(contributed or {})
        return types

    def call_one(self, plugin: str, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on one plugin only; None when it does not implement the hook."""
        for impl in getattr(self.hook, hook).get_hookimpls():
            if impl.plugin_name == plugin:
                return impl.function(**kwargs)
        return None


def build_plugin_manager(*, load_entrypoints: bool = True, extra: tuple = ()) -> PluginManager:
    pm = PluginManager()
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=BUILTIN_PREFIX + module_name.rsplit(".", 1)[-1])
    for name, plugin in extra:
        pm.register(plugin, name=name)
    if load_entrypoints:
        _load_entrypoints(pm)
    return pm


def _load_entrypoints(pm: PluginManager) -> None:
    for ep in entry_points(group=GROUP):
        if pm.get_plugin(ep.name) is not None or ep.name in pm.broken:
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # an installed plugin that cannot load must not break others
            pm.broken[ep.name] = f"{type(exc).__name__}: {exc}"
            log.error("plugin_load_failed", plugin=ep.name, error=pm.broken[ep.name])


@cache
def default_manager() -> PluginManager:
    """The process-wide manager (built lazily, never at import time)."""
    return build_plugin_manager()
