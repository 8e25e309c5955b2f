"""Built-in plugin: the provider types that ship with the gateway, registered through
``register_providers`` like a third-party plugin's (which therefore cannot take their names)."""

from __future__ import annotations

from .. import hookimpl
from ..providers.base import Provider
from ..providers.registry import provider_types


@hookimpl
def register_providers() -> dict[str, type[Provider]]:
    return provider_types()
