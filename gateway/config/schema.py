"""JSON Schema validation of loaded config data, with errors mapped back to YAML positions.

All errors of a file are reported at once. jsonschema's raw messages are rewritten where they
would not tell a user what to do (unknown keys, node kinds, durations), and values of secret
fields are never echoed.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any, Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from ..errors import ConfigError
from .source import Path, SourceMap
from .suggest import did_you_mean
from .userinfo import mask_userinfo

SECRET_FIELDS = frozenset(
    {"api_key", "admin_token", "aws_secret_access_key", "aws_session_token", "aws_access_key_id",
     "azure_ad_token"}
)

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}

_BOUNDS = {
    "minimum": "must be at least",
    "maximum": "must be at most",
    "exclusiveMinimum": "must be greater than",
    "exclusiveMaximum": "must be less than",
    "minItems": "needs at least this many items:",
    "minLength": "is too short; minimum length:",
}

# Messages for oneOf definitions, by $defs name.
_ONE_OF_HELP = {
    "duration": "expected a duration such as 250ms, 30s, 5m, 1h, 1d or a number of seconds",
    "size": "expected a size such as 512KB, 20MB, 1GB or a number of bytes",
    "timeout": "expected a duration, or a mapping of connect, first_byte, idle and total durations",
}


@cache
def load_schema() -> dict[str, Any]:
    text = resources.files("gateway.config").joinpath("gateway.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Draft202012Validator:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@cache
def _def_names() -> dict[int, str]:
    return {id(v): k for k, v in load_schema()["$defs"].items()}


def validate(data: Any, source: SourceMap) -> list[ConfigError]:
    """Every schema error of ``data``, as ConfigErrors with positions."""
    errors: list[ConfigError] = []
    for err in _validator().iter_errors(data):
        errors.extend(_convert(err, source))
    # "unknown key 'fallbak'" already explains why a node has no kind: say it once.
    unknown_at = {e.path.rsplit(".", 1)[0] for e in errors if e.message.startswith("unknown key")}
    return [
        e for e in errors if not (e.message.startswith("a node needs") and e.path in unknown_at)
    ]


def validate_fragment(schema: dict[str, Any], data: Any, source: SourceMap,
                      prefix: Path) -> list[ConfigError]:
    """Validate ``data`` (found at ``prefix`` in the file) against a schema a plugin supplies."""
    try:
        Draft202012Validator.check_schema(schema)
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    except SchemaError as exc:
        return [source.error(prefix, f"the plugin's own config schema is invalid: {exc.message}")]
    return [e for err in validator.iter_errors(data) for e in _convert(err, source, prefix)]


def _convert(err: ValidationError, source: SourceMap, prefix: Path = ()) -> Iterator[ConfigError]:
    path = prefix + tuple(err.absolute_path)
    kind = err.validator
    if "propertyNames" in err.schema_path:
        yield source.error(path + (err.instance,), _name_message(err.instance), at_key=True)
    elif kind == "additionalProperties":
        yield from _unknown_keys(err, path, source)
    elif kind == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.validator_value
        yield source.error(path, f"missing required key '{missing}'")
    elif kind == "oneOf":
        yield from _one_of(err, path, source, prefix)
    elif kind == "const" and path == ("version",):
        yield source.error(
            path, f"version {err.instance!r} is not supported", "this gateway reads version: 1"
        )
    elif kind == "enum":
        hint = did_you_mean(str(err.instance), err.validator_value)
        options = ", ".join(str(v) for v in err.validator_value)
        yield source.error(path, f"{_show(path, err.instance)} is not one of: {options}", hint)
    elif kind == "type":
        expected = err.validator_value
        names = [expected] if isinstance(expected, str) else expected
        wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        yield source.error(path, f"expected {wanted}, got {_describe(err.instance)}")
    elif kind == "pattern":
        yield source.error(path, _pattern_message(path, err))
    elif kind == "format":
        yield source.error(path, _format_message(path, err))
    elif kind in _BOUNDS:
        yield source.error(path, f"{_show(path, err.instance)} {_BOUNDS[kind]} {err.validator_value}")
    else:
        yield source.error(path, _redacted_message(path, err))


def _unknown_keys(err: ValidationError, path: Path, source: SourceMap) -> Iterator[ConfigError]:
    known = list(err.schema.get("properties", {}))
    extras = [k for k in err.instance if k not in known]
    patterns = err.schema.get("patternProperties", {})
    if patterns:  # a condition: keys are field paths
        extras = [k for k in extras if not any(re.match(p, k) for p in patterns)]
        for key in extras:
            hint = did_you_mean(key, known + _condition_field_guesses(err.instance, key))
            yield source.error(
                path + (key,),
                f"unknown condition field '{key}': use metadata.*, params.*, key.name or route, "
                "combined with $and, $or, $not",
                hint,
                at_key=True,
            )
        return
    for key in extras:
        yield source.error(
            path + (key,), f"unknown key '{key}'", did_you_mean(key, known), at_key=True
        )


def _condition_field_guesses(instance: dict[str, Any], key: str) -> list[str]:
    head, _, rest = key.partition(".")
    return [f"{root}.{rest}" for root in ("metadata", "params")] + ["key.name", "route"]


def _one_of(err: ValidationError, path: Path, source: SourceMap, prefix: Path) -> Iterator[ConfigError]:
    branches = err.validator_value
    if all(set(b) == {"required"} for b in branches):  # node kinds
        kinds = [b["required"][0] for b in branches]
        present = [k for k in kinds if isinstance(err.instance, dict) and k in err.instance]
        choices = ", ".join(kinds)
        if not present:
            yield source.error(path, f"a node needs exactly one of: {choices}")
        else:
            yield source.error(
                path, f"a node is exactly one of {choices}; found {' and '.join(present)}"
            )
        return
    # A branch whose shape fits the value (a mapping for a mapping) holds the real reason, such
    # as an unknown operator or a bad duration inside a split timeout: report that, where it is.
    # Branches that failed only on the value's type, here, are the wrong branches.
    name = _def_names().get(id(err.schema))
    scalar = not isinstance(err.instance, (dict, list))
    if name in _ONE_OF_HELP and scalar:
        yield source.error(path, f"{_show(path, err.instance)}: {_ONE_OF_HELP[name]}")
        return
    reasons = [
        e for e in err.context
        if e.validator != "type" and not (e.validator == "oneOf" and e.absolute_path == err.absolute_path)
    ]
    if reasons:
        yield from _convert(max(reasons, key=lambda e: len(e.absolute_path)), source, prefix)
        return
    if name in _ONE_OF_HELP:
        yield source.error(path, f"{_show(path, err.instance)}: {_ONE_OF_HELP[name]}")
        return
    description = err.schema.get("description")
    suffix = f": {description}" if description else ""
    yield source.error(path, f"{_show(path, err.instance)} is not valid here{suffix}")


def _format_message(path: Path, err: ValidationError) -> str:
    if err.validator_value == "regex" and isinstance(err.instance, str):
        try:
            re.compile(err.instance)
        except re.error as exc:
            return f"{_show(path, err.instance)} is not a valid regular expression: {exc}"
    return f"{_show(path, err.instance)} is not a valid {err.validator_value}"


def _name_message(name: Any) -> str:
    return (
        f"'{name}' is not a valid name: start with a letter or digit, then use letters, digits, "
        "'.', '_' or '-'"
    )


def _pattern_message(path: Path, err: ValidationError) -> str:
    field = path[-1] if path else ""
    if field == "key_sha256":
        return "key_sha256 must be 64 lowercase hex characters (make one with `gateway keys hash`)"
    if field == "base_url" or field == "webhook":
        return f"{_show(path, err.instance)} must start with http:// or https://"
    if field == "state":
        return f"{_show(path, err.instance)} must be memory, sqlite or redis://host:port/db"
    if field in ("sticky",):
        return f"{_show(path, err.instance)} must be metadata.<field> or key.name"
    return f"{_show(path, err.instance)} does not match the pattern {err.validator_value}"


def _redacted_message(path: Path, err: ValidationError) -> str:
    if _is_secret(path):
        return f"invalid value for {path[-1]} ({err.validator} check failed)"
    return mask_userinfo(err.message)


def _is_secret(path: Path) -> bool:
    return bool(path) and (path[-1] in SECRET_FIELDS or (len(path) > 1 and path[-2] == "headers"))


def _show(path: Path, value: Any) -> str:
    if _is_secret(path):
        return "the value"
    text = mask_userinfo(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(value: Any) -> str:
    for py, name in ((bool, "boolean"), (dict, "object"), (list, "array"), (str, "string")):
        if isinstance(value, py):
            return _TYPE_NAMES[name]
    if value is None:
        return "null (an empty value)"
    return "a number"
