"""A new virtual key, as asked for by POST /admin/keys or `gateway keys create`.

Checked against the same JSON Schema as a `keys:` entry in gateway.yaml (``$defs/key`` of
schemas/gateway.schema.json: the same limits, budget and their bounds), plus the shorthands
``rpm``, ``tpm`` and a numeric ``budget`` with ``period`` (the CLI's flags), and the routes of
the running config. Every problem is reported at once, by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any, Iterable

from ..keys.options import parse_expiry
from .schema import load_schema, validate_fragment
from .source import SourceMap
from .suggest import did_you_mean


@dataclass(frozen=True)
class FieldError:
    field: str  # "limits.requests_per_minute", "routes[0]", "rpm"
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message}


class KeyRequestError(ValueError):
    """The request cannot make a key; ``errors`` says what is wrong with which field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


@dataclass(frozen=True)
class KeyRequest:
    """A checked request: the fields KeyStore.create takes."""

    name: str
    routes: list[str] | None
    limits: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    expires_at: float | None = None

    def store_fields(self) -> dict[str, Any]:
        return {"routes": self.routes, "limits": self.limits, "budget": self.budget,
                "metadata": self.metadata, "expires_at": self.expires_at}


@cache
def request_schema() -> dict[str, Any]:
    """``$defs/key`` without ``key_sha256`` (the store makes the key), with a name and the
    shorthands. Shares the schema's ``$defs`` (the same objects), so its messages apply."""
    defs = load_schema()["$defs"]
    entry = {k: v for k, v in defs["key"]["properties"].items() if k != "key_sha256"}
    return {
        "$defs": defs,
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": {"$ref": "#/$defs/name"},
            **entry,
            "expires": {"type": "string", "description": "a duration (30d) or an ISO date"},
            "budget": {"oneOf": [entry["budget"], {"type": "number", "exclusiveMinimum": 0}],
                       "description": "{usd, period?, alert_at?, enforcement?} or a number of "
                                      "USD (with period)"},
            "rpm": defs["limits"]["properties"]["requests_per_minute"],
            "tpm": defs["limits"]["properties"]["tokens_per_minute"],
            "period": defs["budget"]["properties"]["period"],
        },
    }


def check_key_request(body: Any, routes: Iterable[str] | None) -> KeyRequest:
    """The key ``body`` asks for, or KeyRequestError listing every problem. ``routes``: the
    route names of the running config (None: not known, not checked)."""
    errors = [FieldError(_field(e.path), e.message + (f" ({e.hint})" if e.hint else ""))
              for e in validate_fragment(request_schema(), body, SourceMap("<request>"), ())]
    if errors or not isinstance(body, dict):
        raise KeyRequestError(errors or [FieldError("body", "send a JSON object")])
    limits = dict(body.get("limits") or {})
    for short, full in (("rpm", "requests_per_minute"), ("tpm", "tokens_per_minute")):
        if short in body:
            if full in limits:
                errors.append(FieldError(short, f"give {short} or limits.{full}, not both"))
            limits[full] = body[short]
    budget = body.get("budget")
    if isinstance(budget, dict) and "period" in body:
        errors.append(FieldError("period", "put period inside budget: {usd, period}"))
    elif budget is None and "period" in body:
        errors.append(FieldError("period", "period needs a budget"))
    elif budget is not None and not isinstance(budget, dict):
        budget = {"usd": budget, "period": body.get("period", "monthly")}
    wanted = body.get("routes")
    if routes is not None and wanted:
        known = list(routes)
        for i, route in enumerate(wanted):
            if route != "*" and route not in known:
                hint = did_you_mean(route, known)
                errors.append(FieldError(f"routes[{i}]", f"unknown route '{route}'"
                                         + (f" ({hint})" if hint else "")))
    try:
        expires_at = parse_expiry(body.get("expires"))
    except ValueError as exc:
        errors.append(FieldError("expires", str(exc).removeprefix("--expires ")))
        expires_at = None
    if errors:
        raise KeyRequestError(errors)
    return KeyRequest(body["name"], None if not wanted or "*" in wanted else list(wanted),
                      limits, budget, dict(body.get("metadata") or {}), expires_at)


def _field(json_path: str) -> str:
    return json_path.removeprefix("$").removeprefix(".") or "body"
