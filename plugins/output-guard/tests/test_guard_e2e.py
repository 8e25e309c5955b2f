"""output-guard end to end: the gateway (in process), the plugin found through its entry point,
and an upstream whose answers are scripted per model."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.cli_runner import Result, run_cli

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}", api_key: upstream-key}}
routes:
  guarded:
    fallback:
      on_status: [500]        # "guardrail" is not listed: a refused answer moves on anyway
      targets:
        - target: {{provider: up, model: first}}
        - target: {{provider: up, model: second}}
  single: {{target: {{provider: up, model: first}}}}
plugins:
  - name: output-guard
    config: {config}
"""


@pytest.fixture
def start(scripted, gateway_app):
    def run(config: str, **answers: str):
        scripted.answers.update(answers)
        return gateway_app(CONFIG.format(base_url=scripted.base_url, config=config))
    return run


def client(gw) -> openai.OpenAI:
    return gw.openai()


def ask(gw, model: str = "guarded", **extra) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return gw.post("/v1/chat/completions", json=body)


def test_fallback_moves_on_when_deny_matches(start, scripted):
    """fallback: a denied answer is never returned; the next target answers."""
    gw = start('{deny: ["(?i)internal use only"]}',
               first="INTERNAL USE ONLY: the plan", second="Here is the public plan.")
    r = ask(gw)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "Here is the public plan."
    assert r.headers["x-gateway-target"] == "up/second"
    assert r.headers["x-gateway-attempts"] == "2"
    assert scripted.models_seen() == ["first", "second"]
    assert "x-gateway-guard" not in r.headers


def test_503_naming_the_rule_when_no_target_is_left(start, scripted):
    """When every target's answer is refused, the client gets 503 naming the rule."""
    gw = start("{deny: [secret, answer]}")
    r = ask(gw)
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["type"] == "guardrail_error" and error["code"] == "guardrail"
    assert "refused by plugin 'output-guard': deny[1] matched" in error["message"]
    assert scripted.models_seen() == ["first", "second"]


def test_max_length_fallback(start, scripted):
    """An answer over max_length is refused; a short one from the next target is returned."""
    gw = start("{max_length: 20}", first="x" * 21, second="short enough")
    reply = client(gw).chat.completions.create(
        model="guarded", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "short enough"
    r = ask(gw, model="single")
    assert r.status_code == 503
    assert "max_length 20 exceeded (21 characters)" in r.json()["error"]["message"]


def test_json_schema_fallback(start, scripted):
    """An answer that is not JSON for the schema is refused; valid JSON is returned."""
    schema = '{json_schema: {type: object, required: [name], properties: {name: {type: string}}}}'
    gw = start(schema, first='{"nom": "Ada"}', second='{"name": "Ada"}')
    r = ask(gw)
    assert r.status_code == 200
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"name": "Ada"}
    r = ask(gw, model="single")
    assert r.status_code == 503
    assert "json_schema: 'name' is a required property" in r.json()["error"]["message"]


def test_flag_returns_the_answer_with_a_header(start, scripted):
    """flag: the answer comes back as it is, with x-gateway-guard naming the rule."""
    gw = start('{deny: ["(?i)guaranteed returns"], on_fail: flag}',
               first="Guaranteed returns of 20%!", second="clean")
    raw = client(gw).chat.completions.with_raw_response.create(
        model="guarded", messages=[{"role": "user", "content": "invest?"}])
    assert raw.headers["x-gateway-guard"] == "deny[0] matched"
    assert raw.parse().choices[0].message.content == "Guaranteed returns of 20%!"
    assert raw.headers["x-gateway-target"] == "up/first"  # flag never falls back
    assert scripted.models_seen() == ["first"]


def test_flag_clean_answer_has_no_header(start, scripted):
    """flag: an answer that breaks no rule has no x-gateway-guard header."""
    gw = start("{max_length: 100, on_fail: flag}")
    r = ask(gw)
    assert r.status_code == 200 and "x-gateway-guard" not in r.headers


def test_flag_header_for_a_schema_reason(start, scripted):
    """A json_schema reason in the header is one ASCII line even for non-ASCII answers."""
    gw = start("{json_schema: {type: object}, on_fail: flag}", first='"héllo"')
    r = ask(gw, model="single")
    assert r.status_code == 200
    assert r.headers["x-gateway-guard"] == "json_schema: 'h\\xe9llo' is not of type 'object'"


def stream_raw(gw, model: str = "guarded") -> bytes:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with gw.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        return b"".join(r.iter_bytes())


def stream_text(raw: bytes) -> str:
    return "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                   for e in raw.decode().split("\n\n")
                   if e.startswith("data: {") and '"choices"' in e)


def test_stream_fallback_ends_with_an_sse_error(start, scripted):
    """fallback, streamed: the stream stops before the denied text, with an SSE error event."""
    gw = start('{deny: ["launch code"]}', first="The launch code is 0000, do not share.")
    raw = stream_raw(gw)
    events = [e for e in raw.decode().split("\n\n") if e]
    error = json.loads(events[-1][6:])["error"]
    assert error["code"] == "guardrail" and error["type"] == "guardrail_error"
    assert "refused by plugin 'output-guard': deny[0] matched" in error["message"]
    assert "launch code" not in stream_text(raw)
    assert stream_text(raw).startswith("The ")  # what came before was already sent
    assert b"[DONE]" not in raw
    assert scripted.models_seen() == ["first"]  # after the first byte there is no fallback


def test_stream_fallback_with_the_openai_client(start, scripted):
    """The official client sees the SSE error event as an API error."""
    gw = start("{max_length: 12}", first="This answer is much too long.")
    stream = client(gw).chat.completions.create(
        model="single", stream=True, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.APIError, match="max_length 12 exceeded"):
        for _ in stream:
            pass


def test_stream_flag_adds_a_comment_line(start, scripted):
    """flag, streamed: the answer arrives in full, with an SSE comment naming the rule."""
    gw = start('{deny: ["(?i)guaranteed"], on_fail: flag}', first="Guaranteed returns, honestly.")
    raw = stream_raw(gw)
    assert stream_text(raw) == "Guaranteed returns, honestly."
    assert b"\n: x-gateway-guard: deny[0] matched\n\n" in raw
    assert raw.endswith(b"data: [DONE]\n\n")
    stream = client(gw).chat.completions.create(
        model="single", stream=True, messages=[{"role": "user", "content": "hi"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == \
        "Guaranteed returns, honestly."


def test_stream_json_schema_checked_at_the_end(start, scripted):
    """A streamed answer that is not JSON for the schema fails when it finishes."""
    gw = start("{json_schema: {type: object}}", first="[1, 2, 3]")
    raw = stream_raw(gw, model="single")
    assert stream_text(raw) == "[1, 2, 3]"
    assert b'"code":"guardrail"' in raw and b"[DONE]" not in raw


def validate(tmp_path, plugin_config: str) -> Result:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "version: 1\n"
        "providers: {demo: {type: mock}}\n"
        "routes: {chat: {target: {provider: demo, model: m}}}\n"
        "plugins:\n"
        "  - name: output-guard\n"
        "    config:\n" + plugin_config)
    return run_cli("validate", path)


def test_invalid_regex_is_a_config_error(tmp_path):
    """gateway validate rejects a deny pattern that does not compile, naming it."""
    result = validate(tmp_path, '      deny: ["ok", "(unclosed"]\n')
    assert result.code == 1
    out = result.text
    assert "gateway.yaml:7:20: $.plugins[0].config.deny[1]: '(unclosed' is not a valid regular " \
        "expression: missing ), unterminated subpattern" in out


def test_invalid_json_schema_is_a_config_error_with_its_line(tmp_path):
    """gateway validate rejects an invalid json_schema at the line of the bad keyword."""
    result = validate(tmp_path, "      json_schema:\n"
                                "        type: object\n"
                                "        required: name\n")
    assert result.code == 1
    out = result.text
    assert "gateway.yaml:9:19: $.plugins[0].config.json_schema.required: expected a list" in out


def test_unknown_key_is_a_config_error(tmp_path):
    """gateway validate rejects keys the plugin does not know."""
    result = validate(tmp_path, "      deny: [x]\n      on_failure: flag\n")
    assert result.code == 1
    assert "on_failure" in result.text
