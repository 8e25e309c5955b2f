"""Error values shared by every layer. Standard library and orjson only.

Config errors carry the file, line and column they come from, so every message a user sees
points at the place to fix. Upstream errors carry a status and an error class, so fallback and
retry policies can decide without parsing text.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class ConfigError:
    """One problem in a config file, printed compiler-style: ``FILE:LINE:COL: message``."""

    file: str
    line: int
    column: int
    path: str  # JSON path such as $.routes.smart.fallback.targets[0]
    message: str
    hint: str | None = None
    severity: str = "error"  # or "warning": reported, but the config is accepted

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path and self.path != "$" else ""
        label = "warning: " if self.severity == "warning" else ""
        text = f"{self.file}:{self.line}:{self.column}: {label}{where}{self.message}"
        return f"{text} ({self.hint})" if self.hint else text

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
            "severity": self.severity,
        }


class ConfigErrors(Exception):
    """A config was rejected; holds every error found, sorted by position."""

    def __init__(self, errors: list[ConfigError]):
        unique = {(e.file, e.line, e.column, e.path, e.message): e for e in errors}
        self.errors: tuple[ConfigError, ...] = tuple(
            sorted(unique.values(), key=lambda e: (e.file, e.line, e.column, e.message))
        )
        super().__init__("\n".join(str(e) for e in self.errors))


# Error classes that `on_status` lists may name besides numeric statuses.
ERROR_CLASSES = frozenset(
    {"timeout", "connection", "rate_limit", "server", "context_window", "content_policy"}
)


class UpstreamError(Exception):
    """One failed attempt against an upstream target.

    ``status`` is what the client would see if this were the last attempt; ``error_class`` is
    one of ERROR_CLASSES, ``"client"`` for other 4xx answers (returned to the client as they
    are), or a class a plugin adds (such as ``"guardrail"``). Timeouts and connection failures
    have no upstream status: ``from_upstream`` is False and only their class matches policies.
    """

    def __init__(
        self,
        status: int,
        error_class: str,
        message: str,
        *,
        target: str = "",
        retry_after: float | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        from_upstream: bool = True,
    ):
        super().__init__(message)
        self.status = status
        self.error_class = error_class
        self.message = message
        self.from_upstream = from_upstream  # False for timeouts and connection errors
        self.target = target
        self.retry_after = retry_after
        self.body = body
        self.headers = headers or {}
        # The failure of an upstream call that another request already reported (a merged
        # call of micro-batched embeddings fails each member): breakers count it once.
        self.shared = False


def classify_status(status: int, code: str | None = None) -> str:
    """Map an upstream HTTP status (and OpenAI-style error code) to an error class."""
    if code in ("context_length_exceeded", "string_above_max_length"):
        return "context_window"
    if code in ("content_filter", "content_policy_violation"):
        return "content_policy"
    if status == 429:
        return "rate_limit"
    if status == 408:
        return "timeout"
    if status >= 500:
        return "server"
    return "client"


def storage_reason(exc: BaseException) -> str:
    """What a caller may be told of a failing disk or database: the error's kind and, for
    an OSError, only its strerror. ``str()`` of an OSError names the file, and the server's
    paths belong in its log, not in answers. (SQLite's own messages name no file.)"""
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or 'error ' + str(exc.errno)}"
    return f"{type(exc).__name__}: {exc}"


def openai_error_body(message: str, type: str, code: str | None = None,
                      param: str | None = None) -> bytes:
    """An error in OpenAI's shape: ``{"error": {message, type, code, param}}``."""
    return orjson.dumps({"error": {"message": message, "type": type, "code": code,
                                   "param": param}})


class GatewayError(Exception):
    """An answer the gateway gives itself, in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def openai_body(self) -> bytes:
        """The error in OpenAI's shape: ``{"error": {message, type, code, param}}``."""
        return openai_error_body(self.message, self.type, self.code, self.param)


def plugin_error(plugin: str, exc: BaseException) -> GatewayError:
    """A plugin raised while handling a request: a 500 that names it and the kind of error.
    The exception's text stays in the log (the caller logs it with its traceback): it can
    quote anything the plugin held, a URL with a credential in it, another caller's data."""
    return GatewayError(
        500,
        f"plugin '{plugin}' failed: {type(exc).__name__} (the details are in the gateway's log)",
        type="server_error",
        code="plugin_error",
    )
