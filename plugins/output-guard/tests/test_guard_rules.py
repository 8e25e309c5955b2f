"""output-guard's rules: compiling the config, each check and its reason, the config schema,
and the hooks' objects in process."""

from __future__ import annotations

import orjson
import pytest
from jsonschema import Draft202012Validator

from gateway.graph.context import RequestContext
from gateway.providers.base import UpstreamResponse
from gateway_output_guard import (CONFIG_SCHEMA, HEADER, AttemptGuard, Flag, GuardState,
                                  StreamFallback, attempt_check, response_middleware)
from gateway_output_guard.rules import RuleError, Rules, header_value

PERSON = {"type": "object", "required": ["name"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}


class Plugin:
    name = "output-guard"


def answer(*texts: str) -> dict:
    return {"object": "chat.completion", "choices": [
        {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
        for i, t in enumerate(texts)]}


# -- compiling -------------------------------------------------------------------------------

def test_invalid_regex_is_a_config_error_naming_the_entry():
    """A deny pattern that does not compile names its index and the regex error."""
    with pytest.raises(RuleError, match=r"deny\[1\] is not a valid regular expression: "
                                        r"unterminated character set"):
        Rules.from_config({"deny": ["fine", "[a-z"]})


def test_invalid_json_schema_is_a_config_error():
    """A json_schema that is not a valid schema is refused with where and why."""
    with pytest.raises(RuleError, match=r"json_schema is not a valid JSON Schema: at \['type'\]"):
        Rules.from_config({"json_schema": {"type": "strnig"}})


def test_json_schema_of_another_draft_is_checked_against_that_draft():
    """A schema naming draft-07 is checked (and used) as draft-07."""
    rules = Rules.from_config({"json_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "array", "items": [{"type": "integer"}], "additionalItems": False}})
    assert rules.check("[1]") is None
    assert rules.check("[1, 2]").startswith("json_schema:")
    with pytest.raises(RuleError):
        Rules.from_config({"json_schema": {"$schema": "http://json-schema.org/draft-07/schema#",
                                           "minLength": -1}})


def test_a_config_without_rules_is_refused():
    """An output-guard with nothing to check is a config error, not a silent no-op."""
    with pytest.raises(RuleError, match="no rule to check"):
        Rules.from_config({"on_fail": "flag"})


# -- checks ----------------------------------------------------------------------------------

def test_deny_names_the_first_matching_pattern():
    """deny[i] matched names the first pattern found (re.search, inline flags honoured)."""
    rules = Rules.from_config({"deny": [r"\bsecret-\d+", "(?i)as an ai"]})
    assert rules.check("all fine") is None
    assert rules.check("As an AI, I cannot") == "deny[1] matched"
    assert rules.check("as an AI: secret-42") == "deny[0] matched"


def test_max_length_counts_characters_not_bytes():
    """max_length is in characters; the reason says the limit and the length."""
    rules = Rules.from_config({"max_length": 5})
    assert rules.check("ééééé") is None  # 5 characters, 10 bytes
    assert rules.check("abcdef") == "max_length 5 exceeded (6 characters)"


def test_json_schema_reasons():
    """Not JSON, or JSON that breaks the schema: the reason says which."""
    rules = Rules.from_config({"json_schema": PERSON})
    assert rules.check('{"name": "Ada", "age": 36}') is None
    assert rules.check('{"age": 36}') == "json_schema: 'name' is a required property"
    assert rules.check('{"name": "Ada", "age": "old"}') == \
        "json_schema: $['age']: 'old' is not of type 'integer'"
    not_json = rules.check('Sure! {"name": 1}')
    assert not_json.startswith("json_schema: the answer is not valid JSON")


def test_rules_run_in_order_deny_length_schema():
    """When several rules break, the reason is the first of deny, max_length, json_schema."""
    rules = Rules.from_config({"deny": ["bad"], "max_length": 3, "json_schema": PERSON})
    assert rules.check("bad answer") == "deny[0] matched"
    assert rules.check("long answer") == "max_length 3 exceeded (11 characters)"
    assert rules.check("{}") == "json_schema: 'name' is a required property"


def test_check_response_looks_at_every_choice():
    """With several choices, the reason names the choice that broke the rule."""
    rules = Rules.from_config({"deny": ["bad"]})
    assert rules.check_response(answer("good")) is None
    assert rules.check_response(answer("bad")) == "deny[0] matched"
    assert rules.check_response(answer("good", "bad")) == "choices[1]: deny[0] matched"


def test_check_response_skips_non_text_answers():
    """Tool-call answers (content null) and bodies without choices pass."""
    rules = Rules.from_config({"max_length": 1})
    tool = {"choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                 "tool_calls": [{"id": "x"}]}}]}
    assert rules.check_response(tool) is None
    assert rules.check_response({"data": []}) is None
    assert rules.check_response({"choices": [{"index": 0, "text": "legacy"}]}) == \
        "max_length 1 exceeded (6 characters)"


def test_reasons_are_short_and_header_safe():
    """Long reasons are cut; header values are one ASCII line."""
    rules = Rules.from_config({"json_schema": {"type": "array"}})
    reason = rules.check(orjson.dumps({"k" * 300: "ü\nx"}).decode())
    assert len(reason) <= 200 and reason.endswith("...")
    value = header_value("json_schema: 'ü' is not\nvalid")
    assert value == "json_schema: '\\xfc' is not valid" and value.isascii()


# -- config schema ---------------------------------------------------------------------------

@pytest.mark.parametrize("config,ok", [
    ({"deny": ["x"]}, True),
    ({"max_length": 10, "on_fail": "flag"}, True),
    ({"json_schema": PERSON}, True),
    ({"json_schema": True}, True),
    ({"json_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "items": [{}]}}, True),
    ({"json_schema": {"type": 5}}, False),            # checked against the meta-schema
    ({"json_schema": {"required": "name"}}, False),
    ({"json_schema": "object"}, False),
    ({"deny": "x"}, False),
    ({"deny": [""]}, False),
    ({"max_length": 0}, False),
    ({"on_fail": "drop"}, False),
    ({"denny": ["x"]}, False),
])
def test_config_schema(config, ok):
    """The config schema checks types, on_fail and the json_schema itself."""
    Draft202012Validator.check_schema(CONFIG_SCHEMA)
    assert Draft202012Validator(CONFIG_SCHEMA).is_valid(config) is ok


# -- hooks -----------------------------------------------------------------------------------

def test_hooks_per_mode():
    """fallback: an attempt check plus stream checks; flag: only the response middleware."""
    assert isinstance(attempt_check(config={"deny": ["x"]}, context=Plugin()), AttemptGuard)
    assert isinstance(response_middleware(config={"deny": ["x"]}, context=Plugin()), StreamFallback)
    assert not hasattr(StreamFallback, "on_response")  # whole answers are the check's job
    flag = {"deny": ["x"], "on_fail": "flag"}
    assert attempt_check(config=flag, context=Plugin()) is None
    assert isinstance(response_middleware(config=flag, context=Plugin()), Flag)


def test_hooks_raise_on_bad_rules():
    """Set-up fails on a bad regex, so the config is rejected."""
    with pytest.raises(RuleError):
        attempt_check(config={"deny": ["("]}, context=Plugin())
    with pytest.raises(RuleError):
        response_middleware(config={"deny": ["("]}, context=Plugin())


async def test_attempt_guard_returns_the_reason():
    """The attempt check returns the rule and keeps it in the request's GuardState."""
    guard = AttemptGuard(Rules.from_config({"max_length": 4}), "output-guard")
    ctx = RequestContext(endpoint="chat", body={}, route="r")
    ok = UpstreamResponse(200, body=orjson.dumps(answer("tiny")))
    assert await guard.check(ctx, ok) is None
    long = UpstreamResponse(200, body=orjson.dumps(answer("too long")))
    assert await guard.check(ctx, long) == "max_length 4 exceeded (8 characters)"
    assert ctx.state_for(GuardState).rule == "max_length 4 exceeded (8 characters)"


async def test_flag_sets_the_header_only_when_a_rule_breaks():
    """flag: a broken rule adds x-gateway-guard; a clean answer gets no header."""
    flag = Flag(Rules.from_config({"deny": ["bad"]}), "output-guard")
    ctx = RequestContext(endpoint="chat", body={}, route="r")
    clean = await flag.on_response(ctx, UpstreamResponse(200, body=orjson.dumps(answer("good"))))
    assert HEADER not in clean.headers
    body = orjson.dumps(answer("bad"))
    flagged = await flag.on_response(ctx, UpstreamResponse(200, body=body))
    assert flagged.headers[HEADER] == "deny[0] matched"
    assert flagged.body == body  # the answer itself is untouched
