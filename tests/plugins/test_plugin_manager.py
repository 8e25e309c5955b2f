"""The plugin manager: hooks called through pluggy's callers, and names that must be unique
(plugin names, provider types) refused at start-up with both sources named."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from gateway import hookimpl, pluginmanager
from gateway.cli import main
from gateway.pluginmanager import PluginConflict, build_plugin_manager
from gateway.providers.mock import MockProvider


class ProviderPlugin:
    def __init__(self, types: dict):
        self.types = types

    @hookimpl
    def register_providers(self):
        return self.types


provider_plugin = ProviderPlugin


def test_builtin_provider_types_come_through_the_hook():
    """The built-in types are registered by a built-in plugin like any other."""
    pm = build_plugin_manager(load_entrypoints=False)
    assert pm.call_one("builtin:providers", "register_providers")["mock"] is MockProvider
    assert pm.provider_types()["mock"] is MockProvider


class ConfigOnly:
    """Implements a hook with fewer arguments than its spec: pluggy allows it."""

    @hookimpl
    def request_middleware(self, config):
        return ("middleware for", config["value"])


def test_call_one_calls_only_that_plugin_through_pluggy():
    """call_one goes through pluggy's hook caller: only the named plugin answers, and an
    implementation that takes fewer arguments than the spec gets only those."""
    pm = build_plugin_manager(extra=(("a", provider_plugin({"a-type": MockProvider})),
                                     ("b", ConfigOnly())), load_entrypoints=False)
    assert pm.call_one("a", "register_providers") == {"a-type": MockProvider}
    assert pm.call_one("builtin:auth", "register_providers") is None
    assert pm.call_one("b", "request_middleware", config={"value": 1}, context=None) == (
        "middleware for", 1)


def test_duplicate_provider_type_names_both_plugins():
    """A plugin adding a built-in type's name is refused, naming both."""
    with pytest.raises(PluginConflict) as info:
        build_plugin_manager(extra=(("shadow", provider_plugin({"mock": MockProvider})),),
                             load_entrypoints=False)
    message = str(info.value)
    assert "provider type 'mock' is added by two plugins" in message
    assert "built-in gateway.builtin.providers" in message and "shadow" in message


def test_duplicate_provider_type_from_an_installed_plugin():
    """The entry point and its distribution are named."""
    with pytest.raises(PluginConflict) as info:
        build_plugin_manager(extra=(("zzz", provider_plugin({"test-echo": MockProvider})),))
    assert ("entry point 'test-extras = gateway_test_plugins.extras' (distribution "
            "gateway-test-plugins 0.0.1)") in str(info.value)


def test_duplicate_plugin_names_are_refused(monkeypatch):
    """Two entry points with one name: both are named, whichever loads first."""
    twins = [EntryPoint("test-stamp", "gateway_test_plugins.stamp", "gateway"),
             EntryPoint("test-stamp", "gateway_test_plugins.stamp2", "gateway")]
    monkeypatch.setattr(pluginmanager, "entry_points", lambda group: twins)
    with pytest.raises(PluginConflict) as info:
        build_plugin_manager()
    assert str(info.value) == (
        "two plugins are named 'test-stamp': entry point 'test-stamp = gateway_test_plugins.stamp'"
        " and entry point 'test-stamp = gateway_test_plugins.stamp2'; uninstall one of them "
        "(or rename its entry point)")


def test_duplicate_plugin_name_stops_the_cli(monkeypatch, capsys):
    """`gateway` refuses to run at all, with the conflict as the message."""
    twins = [EntryPoint("x", "gateway_test_plugins.stamp", "gateway"),
             EntryPoint("x", "gateway_test_plugins.reject", "gateway")]
    monkeypatch.setattr(pluginmanager, "entry_points", lambda group: twins)
    pluginmanager.default_manager.cache_clear()
    try:
        assert main(["validate", "gateway.yaml"]) == 2
    finally:
        pluginmanager.default_manager.cache_clear()
    assert capsys.readouterr().err.startswith("gateway: two plugins are named 'x'")
