"""Built-in plugin: the request log (`observability.request_log`): every request's record as
a row of logs.db, written in the background (store/logs_writer.py); GET /admin/logs and
GET /admin/stats over it (request_log_api.py); its counts in /metrics; `gateway logs`."""

from __future__ import annotations

import re
from typing import Any, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .. import hookimpl
from ..config.redact import secret_values
from ..config.request_log import RequestLogSettings, log_path, request_log_settings
from ..hookspecs import PluginContext
from ..providers.scrub import MASK, Scrubber
from ..request_record import RequestRecord
from ..store.logs_writer import RequestLogWriter
from . import request_log_api, request_log_cli

# In a logged body: the value of a field named like a credential, a credential written in
# text ("Authorization: ...", "api_key=..."), and token shapes besides the Scrubber's
# (bearer, sk-...): virtual keys, AWS access key ids, Google API keys, GitHub and Slack
# tokens, JWTs. The configured credentials themselves are masked by the Scrubber.
_NAMES = (r"api[_-]?key|x-api-key|authorization|proxy-authorization|access[_-]?token|"
          r"refresh[_-]?token|id[_-]?token|client[_-]?secret|secret[_-]?key|secret|password|"
          r"passwd|token|admin[_-]?token|session[_-]?token|aws[_-]?secret[_-]?access[_-]?key")
_FIELD = re.compile(r'("(?:' + _NAMES + r')"\s*:\s*")((?:[^"\\]|\\.)*)"', re.IGNORECASE)
_INLINE = re.compile(r"\b((?:" + _NAMES + r")\s*[:=]\s*(?:(?:bearer|basic|token)\s+)?)"
                     r"(?!\*\*\*)[^\s\"',;]+", re.IGNORECASE)
_SHAPES = re.compile(r"\bgw-[A-Za-z0-9_\-]{16,}|\bAKIA[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_\-]{30,}"
                     r"|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"
                     r"|\bxox[abpr]-[A-Za-z0-9\-]{10,}"
                     r"|\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+")


class BodyRedactor:
    """Masks secrets in a body's text before it reaches the disk."""

    def __init__(self, scrubber: Scrubber):
        self.scrubber = scrubber

    def __call__(self, text: str) -> str:
        text = _FIELD.sub(lambda m: m.group(1) + MASK + '"', text)
        text = _INLINE.sub(lambda m: m.group(1) + MASK, text)
        text = _SHAPES.sub(MASK, text)
        return self.scrubber.text(text)


class LogRequest:
    """The request_finished function: hands the record to the process's writer."""

    __slots__ = ("writer", "wants_bodies")

    def __init__(self, writer: RequestLogWriter, wants_bodies: bool):
        self.writer = writer
        self.wants_bodies = wants_bodies

    def __call__(self, record: RequestRecord) -> None:
        self.writer.put(record, self.wants_bodies)


class LogMetrics:
    def __init__(self, writer: RequestLogWriter):
        self.writer = writer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        dropped = CounterMetricFamily("gateway_request_log_dropped", "Request log rows dropped "
                                      "because the writer's queue was full")
        dropped.add_metric([], self.writer.dropped)
        written = CounterMetricFamily("gateway_request_log_written", "Request log rows written")
        written.add_metric([], self.writer.written)
        queued = GaugeMetricFamily("gateway_request_log_queue", "Request log rows waiting to be "
                                   "written")
        queued.add_metric([], len(self.writer.pending) + self.writer.in_flight)
        yield from (dropped, written, queued)


def settings_of(context: PluginContext) -> RequestLogSettings:
    return request_log_settings(context.gateway_config.get("observability"))


def writer_for(context: PluginContext, settings: RequestLogSettings) -> RequestLogWriter:
    """The process's writer of the log file (kept across reloads), set up for this config."""
    file = log_path(settings, context.data_dir)
    writer = context.state.acquire(("request-log", file),
                                   lambda: RequestLogWriter(file, queue_size=settings.queue_size))
    writer.configure(queue_size=settings.queue_size, retention_s=settings.retention_s,
                     redact=BodyRedactor(Scrubber.of(secret_values(context.gateway_config))))
    return writer


@hookimpl
def request_finished(config: dict, context: PluginContext) -> LogRequest | None:
    settings = settings_of(context)
    if not settings.enabled:
        return None
    return LogRequest(writer_for(context, settings), settings.log_bodies)


@hookimpl
def metrics_collector(config: dict, context: PluginContext) -> LogMetrics | None:
    settings = settings_of(context)
    return LogMetrics(writer_for(context, settings)) if settings.enabled else None


@hookimpl
def admin_routes(config: dict, context: PluginContext) -> list[Any]:
    """Served also when the log is off: they answer 404 saying so."""
    settings = settings_of(context)
    return request_log_api.routes(log_path(settings, context.data_dir) if settings.enabled
                                  else None)


@hookimpl
def register_commands(subparsers) -> None:
    request_log_cli.register(subparsers)
