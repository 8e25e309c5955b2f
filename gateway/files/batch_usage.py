"""What a provider-native batch used, read from its output and error files once they are
the gateway's (native_follow.py: one pass, line by line, never the whole file in memory),
and counted as live traffic is (docs/files.md#usage-limits-and-budgets).

- ``line_result(data)``: one line of a batch output or error file in OpenAI's format
  (``{"custom_id", "response": {"status_code", "body": {..., "usage"}}, "error"}``): its
  custom_id, status, OpenAI-shaped usage and error message. An adapter for a provider with
  another format writes OpenAI-shaped lines (native_base.ResultFiles).
- ``UsageTap``: fed the files' lines one by one (``line``, or ``add`` parsed); for each line
  the route it was sent to (by custom_id), the target, its cost at the batch price
  (``SpendAccounting.batch_cost``), added to totals per (route, target) when it succeeded;
  and for every line a RequestRecord handed to the plugins' ``request_finished`` functions
  (request log, metrics), request id ``<batch id>-<custom_id>`` as for lines the gateway
  sends itself, ``native_line`` its place in the files (the first ``handed`` lines are not
  handed again: an earlier pass that was interrupted handed them).
- ``SpendAccounting``: what admits a batch against budgets before it is created and charges
  the totals once it ended (the built-in limits, middleware/limits.py ``Limits``).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Mapping, Protocol

import orjson

from ..logs import get_logger
from ..request_record import AttemptRecord, RequestRecord

if TYPE_CHECKING:
    from ..graph.graph import KeySpec
    from ..hookspecs import RequestFinished

log = get_logger("gateway.batches")

_HEADER_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")
EXPIRED_STATUS = 408  # a line the provider never ran (batch_expired, cancelled)
FAILED_STATUS = 502  # an error line without a response


def line_request_id(batch_id: str, custom_id: Any) -> str:
    """The request id of a batch's line, ``<batch id>-<custom_id>``, usable as a header
    value: the custom_id's characters outside [A-Za-z0-9._:-] as "_" (a letter like "é" or a
    newline made every attempt of a batch crash), at most 128 characters."""
    return _HEADER_UNSAFE.sub("_", f"{batch_id}-{custom_id}")[:128]


@dataclass(frozen=True, slots=True)
class LineResult:
    custom_id: str
    status: int
    usage: Mapping[str, Any] | None  # OpenAI-shaped (prompt_tokens, completion_tokens, ...)
    error: str | None


def line_result(data: Any) -> LineResult | None:
    """One line of an OpenAI batch output or error file (parsed); None when it is not an
    object."""
    if not isinstance(data, Mapping):
        return None
    custom_id = data.get("custom_id")
    response, error = data.get("response"), data.get("error")
    response = response if isinstance(response, dict) else {}
    body = response.get("body")
    body = body if isinstance(body, dict) else {}
    usage = body.get("usage")
    status = response.get("status_code")
    if not isinstance(error, dict):
        error = body.get("error") if isinstance(body.get("error"), dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(status, int) or isinstance(status, bool):
        code = error.get("code") if isinstance(error, dict) else None
        status = 200 if error is None else (
            EXPIRED_STATUS if code in ("batch_expired", "batch_cancelled") else FAILED_STATUS)
    return LineResult(custom_id if isinstance(custom_id, str) else "", status,
                      usage if isinstance(usage, dict) else None,
                      message if isinstance(message, str) else None)


class Totals:
    """What the lines of one (route, target) used: requests, tokens in and out, USD."""

    __slots__ = ("requests", "prompt_tokens", "completion_tokens", "usd")

    def __init__(self) -> None:
        self.requests, self.prompt_tokens, self.completion_tokens, self.usd = 0, 0, 0, 0.0

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


class SpendAccounting(Protocol):
    """Counts work the gateway did not send itself (a provider-native batch) the way it
    counts requests: ``middleware.limits.Limits`` implements it."""

    def batch_cost(self, target: str, usage: Mapping[str, Any]) -> float:
        """USD of ``usage`` at ``target`` ("provider/model") at the batch price."""

    async def admit_batch(self, key: "KeySpec | None", estimates: Mapping[str, float],
                          what: str = "") -> None:
        """Raise GatewayError 429 when the estimated USD per route does not fit the spend
        limits and budgets that apply (nothing is held); ``what`` ends the message for work
        that is not a batch."""

    async def charge_batch(self, key: "KeySpec | None", key_name: str | None,
                           totals: Mapping[tuple[str, str], Totals], batch_id: str) -> bool:
        """Count what the batch ``batch_id`` of ``key`` (None: no key, or one gone: then
        only the usage rows, under ``key_name``) used per (route, target): usage rows,
        budgets, USD limits; once per batch id (False: counted before, nothing done)."""


class UsageTap:
    """Reads the lines of a provider batch's output and error files as they are copied."""

    def __init__(self, batch_id: str, endpoint: str, key: str | None,
                 routes: Mapping[str, str],
                 route_of: Callable[[], Awaitable[Mapping[str, str]]] | None = None,
                 accounting: SpendAccounting | None = None,
                 finished: Iterable[tuple[str, "RequestFinished"]] = (),
                 config_version: int = 0, handed: int = 0):
        self.batch_id, self.endpoint, self.key = batch_id, endpoint, key
        self.routes = routes  # route -> target ("provider/model")
        self._route_of = route_of
        self.route_of: Mapping[str, str] = {}  # custom_id -> route (empty: the one route)
        self.default_route = next(iter(routes), "")
        self.accounting = accounting
        self.finished = tuple(finished)
        self.config_version = config_version
        self.handed = handed  # lines already handed to ``finished`` (by an earlier pass)
        self.totals: dict[tuple[str, str], Totals] = {}
        self.lines = 0

    async def start(self) -> None:
        """Before the first file: learn which route each line went to (when several)."""
        if self._route_of is not None:
            self.route_of, self._route_of = await self._route_of(), None

    def line(self, raw: bytes) -> None:
        """One line of a file as it is copied (blank: none)."""
        if not raw.strip():
            return
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        self.add(data)

    def add(self, data: Any) -> None:
        """One line (parsed), OpenAI-shaped."""
        result = line_result(data)
        if result is None:
            log.warning("batch_output_line_unreadable", batch=self.batch_id)
            return
        self.lines += 1
        route = self.route_of.get(result.custom_id, self.default_route)
        target = self.routes.get(route, "")
        usage = result.usage or {}
        prompt = _tokens(usage.get("prompt_tokens"))
        completion = _tokens(usage.get("completion_tokens"))
        cost = self.accounting.batch_cost(target, usage) \
            if self.accounting is not None and usage else 0.0
        if 200 <= result.status < 300:  # as for requests: a failed one is not counted
            totals = self.totals.get((route, target))
            if totals is None:
                totals = self.totals[(route, target)] = Totals()
            totals.requests += 1
            totals.prompt_tokens += prompt
            totals.completion_tokens += completion
            totals.usd += cost
        if self.finished and self.lines > self.handed:
            self._hand_over(result, route, target, prompt, completion, cost)

    def _hand_over(self, result: LineResult, route: str, target: str, prompt: int,
                   completion: int, cost: float) -> None:
        known = result.usage is not None
        record = RequestRecord(
            request_id=line_request_id(self.batch_id, result.custom_id),
            trace_id=os.urandom(16).hex(),
            time=time.time(), endpoint=self.endpoint, route=route, key=self.key, target=target,
            attempts=(AttemptRecord(target, result.status, 0.0),), cache=None, stream=False,
            status=result.status, error=result.error if result.status >= 400 else None,
            outcome=None, tokens_in=prompt if known else None,
            tokens_out=completion if known else None, cost_usd=cost if known else None,
            usage_estimated=False, latency_ms=0.0, ttfb_ms=None, overhead_ms=0.0,
            config_version=self.config_version, native_batch=self.batch_id,
            native_line=self.lines - 1)
        for plugin, function in self.finished:
            try:
                function(record)
            except Exception as exc:  # a plugin's failure must not stop the copy
                log.error("plugin_failed", plugin=plugin, hook="request_finished", exc_info=exc)


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
