"""output-guard: checks every answer against deny patterns, a maximum length and a JSON Schema.

``on_fail: fallback`` (the default) refuses a whole answer inside the graph (attempt_check):
the attempt fails with error class ``guardrail`` and a fallback moves on to its next target;
a stream that breaks a rule is ended with an SSE error event. ``on_fail: flag`` lets the
answer through with an ``x-gateway-guard`` header naming the rule (in a stream, where headers
are already sent, with an SSE comment line instead). See README.md.
"""

from __future__ import annotations

import structlog

from gateway import hookimpl
from gateway.errors import GatewayError

from .rules import Rules, RuleError, header_value
from .stream import StreamGuard

__all__ = ["GuardState", "Rules", "RuleError"]

log = structlog.get_logger("gateway.plugins.output-guard")

HEADER = "x-gateway-guard"
META = "https://json-schema.org/draft/2020-12/schema"

CONFIG_SCHEMA = {
    "$schema": META,
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "deny": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "format": "regex"},
            "description": "Python regular expressions; an answer in which one is found "
                           "(re.search) breaks the rule deny[i]. Use (?i) for any case.",
        },
        "max_length": {
            "type": "integer",
            "minimum": 1,
            "description": "The longest answer allowed, in characters.",
        },
        "json_schema": {
            "type": ["object", "boolean"],
            "description": "The answer must be JSON valid for this schema (2020-12 unless "
                           "it names another draft in $schema).",
            # Checked against the 2020-12 meta-schema here, with line numbers; a schema that
            # names its own draft is checked against that draft when the plugin is set up.
            "if": {"type": "object", "required": ["$schema"]},
            "else": {"$ref": META},
        },
        "on_fail": {
            "enum": ["fallback", "flag"],
            "default": "fallback",
            "description": "fallback: refuse the answer (the next target is tried; 503 when "
                           "none is left); flag: return it with an x-gateway-guard header.",
        },
    },
}


class GuardState:
    """What this plugin keeps for one request (``ctx.state_for(GuardState)``, for other
    plugins too): the rule an answer broke, and the StreamGuard of a streamed answer."""

    __slots__ = ("rule", "stream")

    def __init__(self) -> None:
        self.rule: str | None = None
        self.stream: StreamGuard | None = None


def state_of(ctx) -> GuardState:
    state = ctx.state_for(GuardState)
    return state if state is not None else ctx.keep_state(GuardState())


def _rules(config: dict) -> Rules:
    return Rules.from_config(config)  # RuleError rejects the config with a clear message


def _refused(plugin: str, reason: str) -> GatewayError:
    return GatewayError(503, f"the answer was refused by plugin '{plugin}': {reason}",
                        type="guardrail_error", code="guardrail")


class AttemptGuard:
    """fallback: refuses whole answers inside the graph, so a fallback tries the next target."""

    def __init__(self, rules: Rules, plugin: str):
        self.rules = rules
        self.plugin = plugin

    async def check(self, ctx, response) -> str | None:
        body = response.json()
        if body is None:
            return None
        reason = self.rules.check_response(body)
        if reason:
            state_of(ctx).rule = reason
            log.info("output_guard_refused", plugin=self.plugin, rule=reason, route=ctx.route,
                     request_id=ctx.request_id, stream=False)
        return reason


class StreamChecks:
    """Streams, for both modes: whole events only; the first broken rule goes to _on_fail.

    The StreamGuard kept in the request's GuardState holds no reference to ctx (no reference cycle per
    request): the rule is noted and logged here, after the guard has seen the chunk."""

    event = ""  # the log event of a broken rule

    def __init__(self, rules: Rules, plugin: str):
        self.rules = rules
        self.plugin = plugin

    def on_chunk(self, ctx, chunk: bytes) -> bytes:
        state = state_of(ctx)
        if state.stream is None:
            state.stream = StreamGuard(self.rules, self._on_fail)
        try:
            return state.stream.feed(chunk)
        finally:
            self._note(ctx, state, state.stream)

    def on_stream_end(self, ctx) -> bytes:
        state = ctx.state_for(GuardState)
        if state is None or state.stream is None:
            return b""
        try:
            return state.stream.close()
        finally:
            self._note(ctx, state, state.stream)

    def _note(self, ctx, state: GuardState, guard: StreamGuard) -> None:
        if guard.failed is not None and state.rule is None:
            state.rule = guard.failed
            log.info(self.event, plugin=self.plugin, rule=guard.failed, route=ctx.route,
                     request_id=ctx.request_id, stream=True)

    def _on_fail(self, reason: str) -> bytes:
        raise NotImplementedError


class StreamFallback(StreamChecks):
    """fallback, streamed: the first byte is gone, so no other target can answer; the stream
    ends with an SSE error event instead of the event that broke the rule."""

    event = "output_guard_refused"

    def _on_fail(self, reason: str) -> bytes:
        raise _refused(self.plugin, reason)


class Flag(StreamChecks):
    """flag: whole answers get the x-gateway-guard header; streams an SSE comment line."""

    event = "output_guard_flagged"

    async def on_response(self, ctx, response):
        body = response.json()
        if body is None:
            return response
        reason = self.rules.check_response(body)
        if reason:
            state_of(ctx).rule = reason
            response.headers[HEADER] = header_value(reason)
            log.info(self.event, plugin=self.plugin, rule=reason, route=ctx.route,
                     request_id=ctx.request_id, stream=False)
        return response

    def _on_fail(self, reason: str) -> bytes:
        return f": {HEADER}: {header_value(reason)}\n\n".encode("ascii")


@hookimpl
def plugin_config_schema():
    return CONFIG_SCHEMA


@hookimpl
def attempt_check(config, context):
    rules = _rules(config)
    if config.get("on_fail", "fallback") == "fallback":
        return AttemptGuard(rules, context.name)
    return None


@hookimpl
def response_middleware(config, context):
    rules = _rules(config)
    if config.get("on_fail", "fallback") == "flag":
        return Flag(rules, context.name)
    return StreamFallback(rules, context.name)
