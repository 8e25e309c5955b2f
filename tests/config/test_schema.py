"""gateway.config.schema: JSON Schema validation with errors at exact YAML positions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from gateway.config import schema
from gateway.config.compiler import compile_bytes
from gateway.config.loader import parse
from gateway.errors import ConfigError, ConfigErrors

ROOT = Path(__file__).resolve().parents[2]
H = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"


def validate(text: str, env: dict[str, str] | None = None) -> list[ConfigError]:
    data, source = parse(text, "g.yaml", env or {})
    return list(ConfigErrors(schema.validate(data, source)).errors)


def where(errors: list[ConfigError]) -> list[tuple[int, int, str]]:
    return [(e.line, e.column, e.path) for e in errors]


def only(errors: list[ConfigError]) -> ConfigError:
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# -- a valid config -------------------------------------------------------------------------


VALID = f"""\
version: 1
server: {{host: 127.0.0.1, port: 8080, max_body: 20MB, state: sqlite}}
defaults:
  timeout: 60s
  retry: {{attempts: 2, on_status: [429, 500, timeout], backoff: exponential, base: 500ms, max: 8s}}
providers:
  openai: {{type: openai, api_key: sk-x}}
  demo: {{type: mock, latency: 10ms}}
routes:
  smart:
    fallback:
      on_status: [429, 500, timeout, context_window]
      targets:
        - target: {{provider: openai, model: gpt-4o, timeout: {{connect: 1s, total: 20s}}}}
        - target: {{provider: demo, model: m}}
  cheap:
    loadbalance:
      algorithm: round_robin
      targets:
        - {{weight: 3, target: {{provider: demo, model: a}}}}
        - {{weight: 0.5, route: smart}}
  tiered:
    conditional:
      rules:
        - when: {{metadata.tier: {{$eq: premium}}, $or: [{{params.max_tokens: {{$gt: 4000}}}}, {{key.name: k}}]}}
          then: {{route: smart}}
      default: {{route: cheap}}
  rollout:
    canary: {{percent: 10, stable: {{route: smart}}, canary: {{route: cheap}}}}
keys:
  research: {{key_sha256: {H}, routes: [smart], metadata: {{team: research}}}}
"""


def test_valid_config_has_no_errors():
    """A config using every node kind passes the schema."""
    assert validate(VALID) == []


# -- unknown keys ---------------------------------------------------------------------------


def test_misspelled_top_level_key_with_did_you_mean():
    """A misspelled top-level key is reported at the key, with a did-you-mean hint."""
    err = only(validate("version: 1\nrouts: {}\n"))
    assert (err.line, err.column, err.path) == (2, 1, "$.routs")
    assert err.message == "unknown key 'routs'"
    assert err.hint == "did you mean 'routes'?"
    assert str(err) == "g.yaml:2:1: $.routs: unknown key 'routs' (did you mean 'routes'?)"


def test_unknown_key_without_close_match_has_no_hint():
    """An unknown key that resembles nothing gets no hint."""
    err = only(validate("version: 1\nzzzzzz: 1\n"))
    assert (err.line, err.column, err.message, err.hint) == (2, 1, "unknown key 'zzzzzz'", None)


def test_misspelled_nested_key():
    """A misspelled key deep in a provider is reported at that key."""
    err = only(validate("version: 1\nproviders:\n  p:\n    type: mock\n    base_ulr: http://x\n"))
    assert (err.line, err.column, err.path) == (5, 5, "$.providers.p.base_ulr")
    assert err.hint == "did you mean 'base_url'?"


def test_unknown_node_kind_key():
    """A misspelled node kind is a single 'unknown key' error at the key, with a hint."""
    err = only(validate("version: 1\nroutes:\n  a:\n    targte: {provider: p, model: m}\n"))
    assert (err.line, err.column, err.path) == (4, 5, "$.routes.a.targte")
    assert err.message == "unknown key 'targte'"
    assert err.hint == "did you mean 'target'?"


def test_unknown_node_kind_in_nested_fallback_target():
    """A misspelled kind inside a fallback's targets is reported where it is written."""
    text = "version: 1\nroutes:\n  a:\n    fallback:\n      targets:\n        - rout: b\n"
    err = only(validate(text))
    assert (err.line, err.column, err.path) == (6, 11, "$.routes.a.fallback.targets[0].rout")
    assert err.hint == "did you mean 'route'?"


def test_node_without_any_kind():
    """A route with settings but no node kind says which kinds exist."""
    err = only(validate("version: 1\nroutes:\n  a:\n    description: hi\n"))
    assert (err.line, err.column, err.path) == (4, 5, "$.routes.a")
    assert err.message == (
        "a node needs exactly one of: target, route, fallback, loadbalance, conditional, canary"
    )


def test_node_with_two_kinds():
    """A node with two kinds names both."""
    text = "version: 1\nroutes:\n  a:\n    target: {provider: p, model: m}\n    route: b\n"
    err = only(validate(text))
    assert (err.line, err.column, err.path) == (4, 5, "$.routes.a")
    assert "found target and route" in err.message
    assert err.message.startswith("a node is exactly one of")


def test_node_with_two_kinds_in_flow_style():
    """In a flow mapping the two-kinds error points at the mapping's opening brace."""
    text = "version: 1\nroutes:\n  a: {route: x, canary: {percent: 1, stable: {route: x}, canary: {route: x}}}\n"
    err = only(validate(text))
    assert (err.line, err.column) == (3, 6)
    assert "found route and canary" in err.message


# -- types, durations, ranges ---------------------------------------------------------------


def test_wrong_type_integer_expected():
    """A string where an integer belongs names both types, at the value."""
    err = only(validate("version: 1\nserver:\n  port: '8080'\n"))
    assert (err.line, err.column, err.path) == (3, 9, "$.server.port")
    assert err.message == "expected an integer, got a string"


def test_wrong_type_mapping_expected():
    """A list where a mapping belongs is reported at the list."""
    err = only(validate("version: 1\nproviders: [openai]\n"))
    assert (err.line, err.column, err.path) == (2, 12, "$.providers")
    assert err.message == "expected a mapping, got a list"


def test_wrong_type_null_value_message():
    """An empty value where a string belongs says it is null."""
    err = only(validate("version: 1\nroutes:\n  a: {route: }\n"))
    assert (err.line, err.column, err.path) == (3, 7, "$.routes.a.route")
    assert err.message == "expected a string, got null (an empty value)"


def test_empty_block_value_reported_on_its_own_line():
    """An empty `route:` is reported on its own line, not at the next key below it."""
    text = "version: 1\nroutes:\n  a:\n    route:\n\n  # another route\n  b:\n    route: a\n"
    err = only(validate(text))
    assert err.path == "$.routes.a.route"
    assert err.line == 4


def test_wrong_type_boolean_is_not_a_number():
    """true is not accepted where a number belongs."""
    err = only(validate("version: 1\ndefaults:\n  retry: {attempts: true}\n"))
    assert (err.line, err.column, err.path) == (3, 21, "$.defaults.retry.attempts")
    assert err.message == "expected an integer, got true or false"


def test_bad_duration():
    """A duration in words is rejected with the accepted forms."""
    err = only(validate("version: 1\ndefaults:\n  retry:\n    base: 5 seconds\n"))
    assert (err.line, err.column, err.path) == (4, 11, "$.defaults.retry.base")
    assert "'5 seconds'" in err.message
    assert "250ms, 30s, 5m, 1h" in err.message


def test_bad_timeout_mentions_split_form():
    """A bad timeout explains both the duration and the split form."""
    err = only(validate("version: 1\ndefaults:\n  timeout: soon\n"))
    assert (err.line, err.column, err.path) == (3, 12, "$.defaults.timeout")
    assert "connect, first_byte, idle and total" in err.message


def test_zero_duration_is_rejected():
    """A duration of 0 seconds is not positive."""
    err = only(validate("version: 1\ndefaults:\n  timeout: 0\n"))
    assert (err.line, err.column) == (3, 12)


def test_bad_duration_inside_split_timeout():
    """A bad duration inside a split timeout is reported at that field."""
    text = "version: 1\ndefaults:\n  timeout:\n    connect: 5s\n    idle: forever\n"
    err = only(validate(text))
    assert (err.line, err.column, err.path) == (5, 11, "$.defaults.timeout.idle")
    assert "'forever'" in err.message


def test_misspelled_key_inside_split_timeout():
    """A misspelled field of a split timeout is an unknown key with a hint, at the key."""
    text = "version: 1\ndefaults:\n  timeout:\n    connect: 5s\n    idel: 3s\n"
    err = only(validate(text))
    assert (err.line, err.column, err.path) == (5, 5, "$.defaults.timeout.idel")
    assert "unknown key 'idel'" in err.message
    assert "did you mean 'idle'?" in str(err)


def test_retry_attempts_out_of_range():
    """retry.attempts: 6 is above the maximum of 5."""
    err = only(validate("version: 1\ndefaults:\n  retry: {attempts: 6}\n"))
    assert (err.line, err.column, err.path) == (3, 21, "$.defaults.retry.attempts")
    assert err.message == "6 must be at most 5"


def test_retry_attempts_zero_out_of_range():
    """retry.attempts: 0 on a target is below the minimum of 1."""
    text = (
        "version: 1\nroutes:\n  a:\n    target:\n      provider: p\n      model: m\n"
        "      retry:\n        attempts: 0\n"
    )
    err = only(validate(text))
    assert (err.line, err.column, err.path) == (8, 19, "$.routes.a.target.retry.attempts")
    assert err.message == "0 must be at least 1"


def test_zero_weight_is_allowed():
    """A weight of 0 drains a target without deleting it: the schema accepts it."""
    text = (
        "version: 1\nroutes:\n  a:\n    loadbalance:\n      targets:\n"
        "        - weight: 0\n          route: b\n        - weight: 1\n          route: c\n"
    )
    assert validate(text) == []


def test_negative_weight_is_rejected():
    """A negative weight is reported at its value."""
    text = "version: 1\nroutes:\n  a:\n    loadbalance:\n      targets: [{weight: -2, route: b}]\n"
    err = only(validate(text))
    assert (err.line, err.column) == (5, 26)
    assert err.message == "-2 must be at least 0"


def test_status_out_of_range_in_on_status():
    """on_status accepts only 400..599 and the known classes."""
    text = "version: 1\ndefaults:\n  retry: {on_status: [503, 200]}\n"
    err = only(validate(text))
    assert (err.line, err.column, err.path) == (3, 28, "$.defaults.retry.on_status[1]")


def test_enum_value_with_hint():
    """An unknown enum value lists the choices and suggests the closest."""
    err = only(validate("version: 1\nserver: {state_outage: lokal}\n"))
    assert (err.line, err.column, err.path) == (2, 24, "$.server.state_outage")
    assert err.message == "'lokal' is not one of: local, closed"
    assert err.hint == "did you mean 'local'?"


def test_missing_required_key():
    """A target without model is reported at the target."""
    err = only(validate("version: 1\nroutes:\n  a:\n    target: {provider: p}\n"))
    assert (err.line, err.column, err.path) == (4, 13, "$.routes.a.target")
    assert err.message == "missing required key 'model'"


def test_bad_key_sha256():
    """key_sha256 that is not 64 lowercase hex characters is explained."""
    err = only(validate(f"version: 1\nkeys:\n  k:\n    key_sha256: {H.upper()}\n"))
    assert (err.line, err.column, err.path) == (4, 17, "$.keys.k.key_sha256")
    assert "64 lowercase hex characters" in err.message
    assert "gateway keys hash" in err.message


def test_short_key_sha256():
    """A truncated hash is refused as well."""
    err = only(validate(f"version: 1\nkeys:\n  k: {{key_sha256: {H[:63]}}}\n"))
    assert (err.line, err.column) == (3, 19)


def test_invalid_route_name():
    """A route name with a space is reported at the name."""
    err = only(validate("version: 1\nroutes:\n  'bad name': {route: x}\n"))
    assert (err.line, err.column) == (3, 3)
    assert "is not a valid name" in err.message


# -- conditions -----------------------------------------------------------------------------


def test_unknown_condition_field_with_hint():
    """A misspelled condition field is reported at the field, suggesting the right one."""
    text = (
        "version: 1\nroutes:\n  a:\n    conditional:\n      rules:\n"
        "        - when: {metdata.tier: premium}\n          then: {route: b}\n"
    )
    err = only(validate(text))
    assert (err.line, err.column) == (6, 18)
    assert err.path == '$.routes.a.conditional.rules[0].when["metdata.tier"]'
    assert err.message.startswith("unknown condition field 'metdata.tier'")
    assert err.hint == "did you mean 'metadata.tier'?"


def test_unknown_condition_field_inside_or():
    """An unknown field nested in $or is found too."""
    text = (
        "version: 1\nroutes:\n  a:\n    conditional:\n      rules:\n"
        "        - when:\n            $or:\n              - parms.max_tokens: {$gt: 1}\n"
        "          then: {route: b}\n"
    )
    errors = validate(text)
    assert [(e.line, e.column) for e in errors] == [(8, 17)]
    assert errors[0].hint == "did you mean 'params.max_tokens'?"


def test_unknown_operator_with_hint():
    """A misspelled operator is reported at the operator, suggesting the right one."""
    text = (
        "version: 1\nroutes:\n  a:\n    conditional:\n      rules:\n"
        "        - when:\n            metadata.tier:\n              $eqq: premium\n"
        "          then: {route: b}\n"
    )
    err = only(validate(text))
    assert (err.line, err.column) == (8, 15)
    assert "unknown key '$eqq'" in err.message
    assert "did you mean '$eq'?" in str(err)


def test_unknown_operator_after_a_valid_one_points_at_its_own_line():
    """An unknown operator on the line after a valid one is reported at its own line."""
    text = (
        "version: 1\nroutes:\n  a:\n    conditional:\n      rules:\n"
        "        - when:\n            params.max_tokens:\n              $gt: 10\n"
        "              $lte_: 99\n"
        "          then: {route: b}\n"
    )
    err = only(validate(text))
    assert "unknown key '$lte_'" in err.message
    assert (err.line, err.column) == (9, 15)


def test_operator_with_wrong_argument_type():
    """$gt needs a number."""
    text = (
        "version: 1\nroutes:\n  a:\n    conditional:\n      rules:\n"
        "        - when: {params.max_tokens: {$gt: many}}\n          then: {route: b}\n"
    )
    err = only(validate(text))
    assert err.line == 6
    assert "many" in err.message


# -- version --------------------------------------------------------------------------------


def test_unsupported_version():
    """version: 2 is refused with the version this gateway reads."""
    err = only(validate("version: 2\n"))
    assert (err.line, err.column, err.path) == (1, 10, "$.version")
    assert err.message == "version 2 is not supported"
    assert err.hint == "this gateway reads version: 1"


def test_string_version_is_unsupported():
    """version: '1' (a string) is not version 1."""
    err = only(validate("version: '1'\n"))
    assert (err.line, err.column) == (1, 10)
    assert err.message == "version '1' is not supported"


def test_missing_version():
    """A config without version is refused."""
    err = only(validate("routes: {}\n"))
    assert (err.line, err.column, err.path) == (1, 1, "$")
    assert err.message == "missing required key 'version'"


# -- all at once ----------------------------------------------------------------------------


MANY = """\
version: 1
server:
  port: eighty
routs: {}
defaults:
  retry: {attempts: 6}
keys:
  k: {key_sha256: nothex}
providers:
  p: {type: mock, latency: later}
"""


def test_all_errors_reported_at_once_sorted_by_line():
    """compile_bytes reports every schema error of a file at once, sorted by line."""
    with pytest.raises(ConfigErrors) as info:
        compile_bytes(MANY.encode(), "g.yaml", env={})
    errors = info.value.errors
    assert [(e.line, e.column) for e in errors] == [(3, 9), (4, 1), (6, 21), (8, 19), (10, 28)]
    assert [e.path for e in errors] == [
        "$.server.port",
        "$.routs",
        "$.defaults.retry.attempts",
        "$.keys.k.key_sha256",
        "$.providers.p.latency",
    ]
    assert str(info.value).splitlines()[0] == (
        "g.yaml:3:9: $.server.port: expected an integer, got a string"
    )


def test_same_line_errors_sorted_by_column():
    """Errors on the same line come out left to right."""
    errors = validate("version: 1\nserver: {port: x, replicas: 0, host: 1}\n")
    assert [(e.line, e.column) for e in errors] == [(2, 16), (2, 29), (2, 38)]


def test_error_in_merged_override_points_at_the_override():
    """A bad value that overrides a `<<:` merge is reported where it is written."""
    text = (
        "version: 1\nproviders:\n  base: &base\n    type: mock\n    latency: 1s\n"
        "  demo:\n    <<: *base\n    latency: soon\n"
    )
    err = only(validate(text))
    assert err.path == "$.providers.demo.latency"
    assert (err.line, err.column) == (8, 14)


# -- secrets --------------------------------------------------------------------------------


SECRET = "sk-live-0123456789abcdef"


@pytest.mark.parametrize(
    "value",
    [
        f"[{SECRET}]",
        f"{{key: {SECRET}}}",
        "987654321987",
    ],
    ids=["list", "mapping", "number"],
)
def test_api_key_value_never_echoed(value):
    """An api_key of the wrong type is reported without echoing its value."""
    text = f"version: 1\nproviders:\n  p:\n    type: openai\n    api_key: {value}\n"
    err = only(validate(text))
    assert err.path == "$.providers.p.api_key"
    assert (err.line, err.column) == (5, 14)
    rendered = str(err) + repr(err.as_dict())
    assert SECRET not in rendered
    assert "987654321987" not in rendered


def test_admin_token_value_never_echoed():
    """A wrong-typed admin_token is reported without echoing its value."""
    err = only(validate("version: 1\nserver:\n  admin_token: [tok-SECRET-42]\n"))
    assert err.path == "$.server.admin_token"
    assert "tok-SECRET-42" not in str(err)


def test_secret_from_env_never_echoed_in_other_errors():
    """Errors elsewhere in a provider do not carry the interpolated api_key."""
    text = "version: 1\nproviders:\n  p:\n    type: openai\n    api_key: ${KEY}\n    max_connections: 0\n"
    with pytest.raises(ConfigErrors) as info:
        compile_bytes(text.encode(), "g.yaml", env={"KEY": SECRET})
    assert SECRET not in str(info.value)
    assert [e.path for e in info.value.errors] == ["$.providers.p.max_connections"]


# -- the shipped schema file ----------------------------------------------------------------


def test_shipped_schema_is_valid_json_schema_2020_12():
    """schemas/gateway.schema.json is a valid Draft 2020-12 JSON Schema."""
    doc = json.loads((ROOT / "schemas" / "gateway.schema.json").read_text("utf-8"))
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(doc)


def test_shipped_schema_identical_to_package_schema():
    """The public schema file and the one the package loads are byte for byte the same."""
    public = (ROOT / "schemas" / "gateway.schema.json").read_bytes()
    packaged = (ROOT / "gateway" / "config" / "gateway.schema.json").read_bytes()
    assert public == packaged
    assert json.loads(public) == schema.load_schema()


def test_shipped_schema_accepts_a_full_config():
    """The public schema, used on its own, accepts a valid config and rejects a bad one."""
    doc = json.loads((ROOT / "schemas" / "gateway.schema.json").read_text("utf-8"))
    validator = Draft202012Validator(doc)
    data, _ = parse(VALID, "g.yaml", {})
    assert list(validator.iter_errors(data)) == []
    assert not validator.is_valid({"version": 1, "routs": {}})


def test_a_keys_limits_are_the_limits_and_its_storage_quota():
    """$defs/key_limits repeats $defs/limits (the gateway's, a route's, a team's) and adds
    only file_storage: the two lists cannot drift apart."""
    defs = schema.load_schema()["$defs"]
    key = dict(defs["key_limits"]["properties"])
    assert key.pop("file_storage")["$ref"] == "#/$defs/size"
    assert key == defs["limits"]["properties"]
    assert defs["key_limits"]["additionalProperties"] is False
