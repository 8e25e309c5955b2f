"""The plugin contract: pluggy hook specifications, discovered through the entry-point group
``gateway``. docs/plugins.md shows each hook with an example.

A plugin is a module (or object) registered under its entry-point name. Two kinds of hooks:

- Per-plugin hooks take the plugin's own ``config`` (from its `plugins:` entry in gateway.yaml)
  and are called only on that plugin, when a config is compiled. They return objects that work
  per request. Pluggy never runs on the request path.
- Global hooks (``register_commands``, ``register_providers``) are called on every installed
  plugin, whether or not a config enables it.

Built-in features use this same contract (see ``gateway/middleware/``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Mapping, Protocol

import pluggy

from .errors import GatewayError, UpstreamError
from .graph.context import RequestContext
from .providers.base import UpstreamResponse

if TYPE_CHECKING:
    from .providers.base import Provider
    from .state.registry import StateRegistry

hookspec = pluggy.HookspecMarker("gateway")

__all__ = [
    "AttemptCheck", "GatewayError", "PluginContext", "RequestContext", "RequestMiddleware",
    "ResponseMiddleware", "UpstreamError", "UpstreamResponse", "hookspec",
]


@dataclass(frozen=True)
class PluginContext:
    """What a plugin may know about the config it is being set up for."""

    name: str  # the plugin's name in gateway.yaml
    config_path: str
    data_dir: str
    gateway_config: Mapping[str, Any]  # the whole validated config (read-only by convention)
    state: "StateRegistry"  # runtime state that survives reloads: acquire(key, factory)
    keys_by_hash: Mapping[str, Any] = field(default_factory=dict)  # compiled virtual keys
    extra: dict[str, Any] = field(default_factory=dict)


class RequestMiddleware(Protocol):
    """Runs before the graph. Change ``ctx`` (body, metadata) and return None to go on; return
    an UpstreamResponse to answer directly (a cache hit); raise GatewayError to refuse."""

    async def on_request(self, ctx: RequestContext) -> UpstreamResponse | None: ...


class ResponseMiddleware(Protocol):
    """Runs after the graph. ``on_response`` sees whole answers and may return a changed one.
    For streams, ``on_chunk`` sees each chunk as it passes (return the bytes to send on) and
    ``on_stream_end`` may add final bytes. All three are optional."""

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> UpstreamResponse: ...

    def on_chunk(self, ctx: RequestContext, chunk: bytes) -> bytes: ...

    def on_stream_end(self, ctx: RequestContext) -> bytes: ...


class AttemptCheck(Protocol):
    """Runs inside the graph on each successful non-streamed upstream answer, before retry and
    fallback decide. Return None to accept it, or a short reason (the rule that failed): the
    attempt then fails with error class ``guardrail`` and a fallback moves on to its next
    target whatever its on_status says."""

    def check(self, ctx: RequestContext, response: UpstreamResponse) -> Awaitable[str | None]: ...


@hookspec
def plugin_config_schema() -> dict | None:
    """The JSON Schema (2020-12) of this plugin's `config:` mapping; None accepts any mapping."""


@hookspec
def request_middleware(config: dict, context: PluginContext) -> RequestMiddleware | None:
    """A middleware run before the graph, or None when this config needs none."""


@hookspec
def response_middleware(config: dict, context: PluginContext) -> ResponseMiddleware | None:
    """A middleware run after the graph, on whole answers and stream chunks, or None."""


@hookspec
def attempt_check(config: dict, context: PluginContext) -> AttemptCheck | None:
    """A check of each upstream answer inside the graph, or None."""


@hookspec
def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `gateway` subcommands: ``subparsers.add_parser(...)`` with ``set_defaults(func=...)``."""


@hookspec
def register_providers() -> Mapping[str, type["Provider"]] | None:
    """Provider types this plugin adds, by the name used as `type:` in gateway.yaml."""
