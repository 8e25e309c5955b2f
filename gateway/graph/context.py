"""Per-request state that travels through middleware and nodes. Mutable, never shared."""

from __future__ import annotations

import random
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, TypeVar

import orjson

from ..errors import GatewayError
from ..providers.base import NativeBody, Upload
from ..types import Node

if TYPE_CHECKING:
    from .graph import KeySpec
    from .policies import RetryBudget

_rng = random.Random()
T = TypeVar("T")


class _Notes(dict[str, Any]):
    """What the deprecated ``ctx.notes`` returns (kept in plugin_state under this class)."""


@dataclass(slots=True)
class Attempt:
    """One upstream call: which target, what came back, how long it took."""

    target: str
    status: int
    error_class: str | None
    latency_ms: float
    started: float | None = None  # time.monotonic() when the call began
    span_id: str | None = None  # its W3C span id (16 hex digits) when traces are on


@dataclass(frozen=True, slots=True)
class Usage:
    """What a request used, as usage accounting settled it (for the RequestRecord)."""

    tokens_in: int
    tokens_out: int
    cost_usd: float
    estimated: bool = False  # the provider reported nothing: the tokens are estimated


@dataclass(slots=True)
class RequestContext:
    """Everything a request carries through the gateway.

    ``endpoint`` is a key of providers.base.ENDPOINT_CAPABILITY (chat, completions, embeddings,
    images, speech, transcriptions). ``body`` is the client's JSON body;
    nodes copy it before changing it, so a fallback always starts from what the client sent.
    """

    endpoint: str
    body: dict[str, Any]
    route: str
    request_id: str = ""
    stream: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    node: Node | None = None  # the route's compiled node, set once the route is known
    files: tuple[Upload, ...] = ()  # files of a multipart request
    native: NativeBody | None = None  # the client's request in a provider's API (front doors)
    send_native: bool = True  # False once a plugin rewrote the body: targets get the translation
    metadata: dict[str, Any] = field(default_factory=dict)
    key_name: str | None = None
    key: KeySpec | None = None  # the caller's key, once authenticated
    target: str = ""  # provider/model that answered, once one has
    cached: bool = False  # answered from the response cache: it costs nothing
    usage: Usage | None = None  # set by usage accounting when the answer is complete
    trace_id: str = ""  # W3C trace id (32 hex digits), set by the server
    trace_parent: str | None = None  # the client's span id (its traceparent's), if any
    trace_sampled: bool | None = None  # None: traces off; else whether its spans are exported
    upstream_ms: float = 0.0  # time spent waiting on upstreams, every attempt included
    backoff_ms: float = 0.0  # time spent in deliberate retry backoff sleeps
    stream_recoveries: int = 0  # continuations that rescued a broken stream (stream_recovery)
    deadline: float | None = None  # time.monotonic() value; None means no request deadline
    retry_budget: RetryBudget | None = None  # the route's, when it has one
    rng: random.Random = _rng
    attempts: list[Attempt] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    # Per-request state of plugins, one object per class (keep_state / state_for).
    plugin_state: dict[type, Any] = field(default_factory=dict)

    def keep_state(self, value: T) -> T:
        """Keep ``value`` for the rest of this request, under its own class, and return it.
        A plugin keeps its per-request state in a class of its own, so it reads only its
        own: ``ctx.state_for(MyState)``."""
        self.plugin_state[type(value)] = value
        return value

    def state_for(self, kind: type[T]) -> T | None:
        """This request's ``kind`` object, if one was kept (keep_state); else None."""
        return self.plugin_state.get(kind)

    @property
    def notes(self) -> dict[str, Any]:
        """Deprecated: a free-form dict shared by every plugin. Keep state in a class of
        your own instead (keep_state / state_for)."""
        warnings.warn("ctx.notes is deprecated: keep per-request state in a class of your own "
                      "with ctx.keep_state(obj) and read it with ctx.state_for(MyState)",
                      DeprecationWarning, stacklevel=2)
        notes = self.plugin_state.get(_Notes)
        return notes if notes is not None else self.keep_state(_Notes())

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()


def header_metadata(headers: Mapping[str, str]) -> dict[str, Any]:
    """The request's metadata from its ``x-gateway-metadata`` header (a JSON object; {}
    without one); GatewayError 400 for anything else."""
    raw = headers.get("x-gateway-metadata")
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise GatewayError(400, "the x-gateway-metadata header must be a JSON object",
                           code="invalid_metadata")
    return value
