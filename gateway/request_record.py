"""RequestRecord: what one request did, built once by the server when the request is over
(for a stream, when its last byte went out) and handed to every plugin's `request_finished`
function (the request log, metrics, traces). Immutable, stdlib only, so any layer may read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One upstream call of the request, in the order they were made."""

    target: str  # provider/model
    status: int  # what came back (or the status the failure counts as)
    latency_ms: float
    error_class: str | None = None  # None on success; timeout, connect, http_5xx, circuit_open, ...
    offset_ms: float | None = None  # when the call began, after the request's arrival
    span_id: str | None = None  # the call's span id, sent upstream in traceparent (traces on)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    trace_id: str  # W3C trace id (32 hex digits): the client's traceparent's, else a new one
    time: float  # unix time the request arrived
    endpoint: str  # chat, completions, embeddings, images, speech, transcriptions, ...
    route: str  # the route asked for ("" when the request failed before naming one)
    key: str | None  # the caller's virtual key name; None when no key was needed
    target: str | None  # provider/model that answered (or the last one tried); "cache" for hits
    attempts: tuple[AttemptRecord, ...]
    cache: str | None  # hit, miss, skip; None when no cache applied
    stream: bool
    status: int  # what the client got (for a stream: 200 when complete, else why it ended)
    error: str | None  # the error message the client got, None on success
    outcome: str | None  # how a stream ended when it did not end normally: interrupted, ...
    tokens_in: int | None  # None when no usage is known (a failure, an endpoint without usage)
    tokens_out: int | None
    cost_usd: float | None
    usage_estimated: bool  # the provider reported no usage: the tokens are estimated
    latency_ms: float  # arrival to answer (for a stream: to its last byte)
    ttfb_ms: float | None  # arrival to the first byte of the answer's body
    overhead_ms: float  # time spent in the gateway itself, upstream waits excluded
    config_version: int
    # The client's JSON body (not a copy: never change it) and a whole answer's body. The
    # server fills them only when a plugin asked for bodies (RequestFinished.wants_bodies).
    request_body: Mapping[str, Any] | None = None
    response_body: bytes | None = None
    # Traces (observability.traces): the client's span id from its traceparent, and whether
    # this request's spans are exported (the client's sampled flag, else sample_ratio).
    parent_span_id: str | None = None
    sampled: bool = False
    # A line of a batch a provider ran with its own batch API (docs/files.md): that batch's
    # id. The gateway did not send it, so it has no latency of its own (latency_ms 0).
    native_batch: str | None = None
    # With native_batch: the line's place in that batch's output file then error file
    # (0-based), so a line handed over again (after a crash) can be recognised.
    native_line: int | None = None

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def fallbacks(self) -> int:
        """How many times the request moved on to another target."""
        return sum(1 for a, b in zip(self.attempts, self.attempts[1:]) if a.target != b.target)

    @property
    def retries(self) -> int:
        """Attempts that repeated the target before them."""
        return sum(1 for a, b in zip(self.attempts, self.attempts[1:]) if a.target == b.target)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready but for response_body), attempts as dicts."""
        return asdict(self)
