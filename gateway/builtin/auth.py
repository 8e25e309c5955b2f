"""Built-in plugin: virtual-key authentication (middleware/auth.py) and the /admin/keys API."""

from __future__ import annotations

from typing import Any

from .. import hookimpl
from ..hookspecs import PluginContext
from ..keys.store import KeyStore, keystore_path
from ..middleware.auth import KeyAuth
from .keys_api import KeysEndpoints


def key_store(context: PluginContext) -> KeyStore:
    """The key store of the config's data_dir, one per process (kept across reloads)."""
    path = keystore_path(context.data_dir)
    return context.state.acquire(("keystore", path), lambda: KeyStore(path))


@hookimpl
def authenticator(config: dict, context: PluginContext) -> KeyAuth:
    """Built in, always on: keys from gateway.yaml and from the key store."""
    return KeyAuth(context.keys_by_hash, key_store(context))


@hookimpl
def request_middleware(config: dict, context: PluginContext) -> KeyAuth:
    """Built in, always first: may this caller use this route?"""
    return KeyAuth(context.keys_by_hash, key_store(context))


@hookimpl
def admin_routes(config: dict, context: PluginContext) -> list[Any]:
    return KeysEndpoints(key_store(context), context.routes, context.data_dir).routes()
