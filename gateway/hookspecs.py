"""The plugin contract: pluggy hook specifications, discovered through the entry-point group
``gateway``. docs/plugins.md shows each hook with an example.

A plugin is a module (or object) registered under its entry-point name. Two kinds of hooks:

- Per-plugin hooks take the plugin's own ``config`` (from its `plugins:` entry in gateway.yaml)
  and are called only on that plugin, when a config is compiled. They return objects that work
  per request. Pluggy never runs on the request path.
- Global hooks (``register_commands``, ``register_providers``) are called on every installed
  plugin, whether or not a config enables it.

Built-in features use this same contract (see ``gateway/builtin/``): the server knows none of
them by name; it mounts the admin routes, runs the readiness checks, exports the metrics and
authenticates callers with whatever the plugins of the running config return.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING, Any, AsyncIterator, Awaitable, Iterable, Mapping, Protocol, Sequence,
)

import pluggy

from .errors import GatewayError, UpstreamError
from .graph.context import RequestContext
from .providers.base import NativeBody, UpstreamResponse
from .request_record import AttemptRecord, RequestRecord

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from .graph.graph import KeySpec, Route, RoutingGraph
    from .providers.base import Provider
    from .state.registry import Acquirer

hookspec = pluggy.HookspecMarker("gateway")

# What the server puts in the scope of an API route under /v1/ (hookspecs.api_routes).
KEY_SCOPE = "gateway.key"  # the caller's KeySpec (None: no key needed)
DISPATCH_SCOPE = "gateway.dispatch"  # the Dispatcher: await it with (request, front door)

__all__ = [
    "AttemptCheck", "AttemptRecord", "Authenticator", "BackgroundTask", "Dispatch", "FrontDoor",
    "GatewayError",
    "MetricsCollector", "NativeBody", "PluginContext", "Routed", "Readiness", "ReadinessCheck",
    "RequestContext", "RequestFinished", "RequestMiddleware", "RequestRecord", "ResponseHeaders",
    "ResponseMiddleware", "UpstreamError", "UpstreamResponse", "hookspec",
]


@dataclass(frozen=True)
class PluginContext:
    """What a plugin may know about the config it is being set up for."""

    name: str  # the plugin's name in gateway.yaml
    config_path: str
    data_dir: str
    gateway_config: Mapping[str, Any]  # the whole validated config (read-only by convention)
    state: "Acquirer"  # runtime state that survives reloads: acquire(key, factory)
    keys_by_hash: Mapping[str, "KeySpec"] = field(default_factory=dict)  # compiled virtual keys
    extra: dict[str, Any] = field(default_factory=dict)
    # The compiled routes (plugins are set up after them) and, per route, every target
    # ("provider/model") it can reach, route references followed.
    routes: Mapping[str, "Route"] = field(default_factory=dict)
    targets: Mapping[str, tuple["TargetRef", ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TargetRef:
    """A target a route can reach: provider name and type, and model."""

    provider: str
    provider_type: str
    model: str

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


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


class ResponseHeaders(Protocol):
    """Headers for the client's answer, whole or streamed (before its first byte goes out),
    such as an ``x-gateway-*`` header of the plugin's own. The gateway's own headers win."""

    def headers(self, ctx: RequestContext, response: UpstreamResponse) -> Mapping[str, str] | None: ...


class AttemptCheck(Protocol):
    """Runs inside the graph on each successful non-streamed upstream answer, before retry and
    fallback decide. Return None to accept it, or a short reason (the rule that failed): the
    attempt then fails with error class ``guardrail`` and a fallback moves on to its next
    target whatever its on_status says."""

    def check(self, ctx: RequestContext, response: UpstreamResponse) -> Awaitable[str | None]: ...


class Authenticator(Protocol):
    """Who is calling. The server asks it before routing, on every request."""

    def identify(self, headers: Mapping[str, str]) -> "KeySpec | None":
        """The caller's key; None when no key is needed; raise GatewayError (401) else."""

    def required(self) -> bool:
        """Whether callers need a key (a gateway listening beyond loopback must require one)."""


@dataclass(slots=True)
class Routed:
    """Where a front door's request goes: its internal body, its route name (what keys and
    limits see), the node that answers it, and the client's own body for providers that speak
    its API. The dispatcher builds it from the body and the route table, or a door's own
    ``route`` function does (passthrough)."""

    body: dict[str, Any]
    route: str
    node: Any  # types.Node: a route's compiled node, or one made for this request
    native: NativeBody | None = None
    retry_budget: Any = None  # graph.policies.RetryBudget of the route, if it has one


class FrontDoor(Protocol):
    """An API in another shape than OpenAI's (Anthropic's Messages, OpenAI's Responses, ...),
    served through the same graph: its requests become internal (OpenAI-shaped) bodies for
    ``endpoint`` and its answers are turned back. Served by a plugin route that hands the
    request to the server's dispatcher (``request.scope["gateway.dispatch"]``, see
    docs/plugins.md)."""

    name: str  # the endpoint in logs ("messages")
    endpoint: str  # the graph endpoint its requests take ("chat")

    def inbound(self, body: dict[str, Any], headers: Mapping[str, str]
                ) -> tuple[dict[str, Any], NativeBody | None]:
        """The internal body, and the client's own body for providers that speak its API
        (None when none does); GatewayError (400) for a body the door cannot read."""

    def answer(self, ctx: RequestContext, response: UpstreamResponse) -> bytes:
        """A whole answer (``response.api`` says its shape) in the door's shape."""

    def stream(self, ctx: RequestContext, response: UpstreamResponse) -> AsyncIterator[bytes]:
        """A streamed answer's bytes in the door's shape."""

    def error(self, status: int, message: str, openai: bytes | None = None) -> bytes:
        """An error body in the door's shape. ``openai``: the body the gateway answers for this
        error on its own OpenAI endpoints (with its ``type``, ``code`` and ``param``), when it
        has one; a door in OpenAI's shape answers it as it is."""

    def stream_error(self, status: int, message: str) -> bytes:
        """The event that ends a stream which failed after its first byte."""


@dataclass(frozen=True, slots=True)
class Readiness:
    """One check's answer for GET /readyz: ``detail`` is shown under the check's name."""

    ready: bool
    detail: Mapping[str, Any]
    reason: str = ""  # why not ready, for the 503 body


class ReadinessCheck(Protocol):
    """A condition /readyz reports. ``name`` is its key in the /readyz body."""

    name: str

    async def check(self) -> Readiness | None:
        """None when there is nothing to report."""


class MetricsCollector(Protocol):
    """A prometheus_client custom collector: yields metric families when /metrics is read."""

    def collect(self) -> Iterable[Any]: ...


class RequestFinished(Protocol):
    """Called with every request's RequestRecord once the request is over (a stream: after
    its last byte), on the event loop, after the answer was handed over: it must be cheap and
    never wait (put the record on a queue and do the work elsewhere). What it raises is logged
    (``plugin_failed``) and does not reach the client. A function, or an object with
    ``__call__``; give it ``wants_bodies = True`` to get ``request_body`` and
    ``response_body`` filled in (they are None otherwise)."""

    def __call__(self, record: RequestRecord) -> None: ...


class Dispatch(Protocol):
    """The server's dispatcher (server/frontdoor.py): what a plugin route finds in
    ``request.scope["gateway.dispatch"]`` and a background task gets. ``graph()`` is the
    running config (read it once per piece of work, as a request does)."""

    def graph(self) -> "RoutingGraph": ...

    async def __call__(self, request: "Request", door: FrontDoor,
                       route: Any = None) -> "Response": ...


class BackgroundTask(Protocol):
    """A plugin's long-running job (the batch runner). The server runs ``await
    run(dispatch)`` on its event loop from start-up (and from the reload that brings it) until
    shutdown (or the reload that drops it), supervised: when it raises, the error is logged
    and it runs again after a backoff. One task per object: a reload whose hook returns the
    same object (kept with ``context.state.acquire``) leaves it running. ``dispatch`` runs
    requests through the graph outside any client request (a synthetic Starlette request,
    the caller's key in its scope under ``gateway.key``)."""

    name: str

    async def run(self, dispatch: Dispatch) -> None: ...


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
def response_headers(config: dict, context: PluginContext) -> ResponseHeaders | None:
    """Headers added to every answer, whole or streamed, or None."""


@hookspec
def attempt_check(config: dict, context: PluginContext) -> AttemptCheck | None:
    """A check of each upstream answer inside the graph, or None."""


@hookspec
def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `gateway` subcommands: ``subparsers.add_parser(...)`` with ``set_defaults(func=...)``."""


@hookspec
def register_providers() -> Mapping[str, type["Provider"]] | None:
    """Provider types this plugin adds, by the name used as `type:` in gateway.yaml."""


@hookspec
def authenticator(config: dict, context: PluginContext) -> Authenticator | None:
    """Who is calling: asked before routing. At most one plugin of a config may return one."""


@hookspec
def admin_routes(config: dict, context: PluginContext) -> Sequence[Any] | None:
    """Starlette routes mounted under /admin (paths relative to it), behind the admin token."""


@hookspec
def api_routes(config: dict, context: PluginContext) -> Sequence[Any] | None:
    """Starlette routes served at the root, for paths the server does not answer itself
    (/v1/files, /dashboard, ...). Under /v1/ the server first identifies the caller as for any
    API request (a 401 in OpenAI's shape without a valid key when keys are required) and puts
    the caller's KeySpec (None when no key is needed) in ``request.scope["gateway.key"]``;
    routes elsewhere are served as they are (the plugin guards them itself)."""


@hookspec
def readiness_check(config: dict, context: PluginContext) -> ReadinessCheck | None:
    """A condition GET /readyz reports; a check that is not ready makes /readyz answer 503."""


@hookspec
def metrics_collector(config: dict, context: PluginContext) -> MetricsCollector | None:
    """Metric families added to GET /metrics, collected when it is read."""


@hookspec
def request_finished(config: dict, context: PluginContext) -> RequestFinished | None:
    """A function called with each request's RequestRecord when the request is over, or None."""


@hookspec
def background_task(config: dict, context: PluginContext) -> BackgroundTask | None:
    """A job the server runs, supervised, while this config (or one returning the same
    object) is live, or None."""
