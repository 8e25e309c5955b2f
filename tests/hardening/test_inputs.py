"""Hostile input never becomes a 500, a traceback or a hang (issue 11, items 12-14).

Config files: an alias bomb, recursive aliases, absurd nesting and unknown YAML tags are
ordinary config errors with FILE:LINE:COL, in `gateway validate` and in a running server's
reload (rejected, counted, the last good config keeps serving). Requests: wrongly typed fields
get a 400 in OpenAI's shape naming the field, before any provider or plugin reads them.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.cli import main as gateway_cli
from gateway.config.compiler import Runtime, compile_file
from gateway.config.loader import load_bytes
from gateway.errors import ConfigErrors
from gateway.providers.anthropic_translate import to_anthropic
from gateway.server import versioning
from gateway.server.app import create_app
from gateway.server.reload import GraphHolder, Reloader

from ..server.inprocess import app_client

GOOD = """version: 1
providers:
  demo: {type: mock}
routes:
  chat: {target: {provider: demo, model: m}}
"""

# "Billion laughs": 9 levels of 9 aliases each, 10^9 values once expanded.
BOMB = GOOD + "".join(
    f"x{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]\n" if level else
    "x0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for level in range(10))


def errors_of(text: str) -> tuple:
    with pytest.raises(ConfigErrors) as caught:
        load_bytes(text.encode(), "gateway.yaml", env={})
    return caught.value.errors


def refused_at(text: str, line: int, column: int, words: str) -> None:
    [error] = errors_of(text)
    assert (error.file, error.line, error.column) == ("gateway.yaml", line, column)
    assert words in error.message


# -- 12: alias bombs -------------------------------------------------------------------------

def test_alias_bomb_is_refused_quickly_with_a_position(tmp_path, capsys):
    """`gateway validate` on a 600-byte alias bomb answers in well under a second, in little
    memory, naming the alias that crosses the budget (it took 60 s and 6 GB)."""
    path = tmp_path / "gateway.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 700
    tracemalloc.start()
    started = time.perf_counter()
    try:
        status = gateway_cli(["validate", str(path)])
        took = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out = capsys.readouterr().err
    assert status == 1
    assert took < 1.0 and peak < 20_000_000, (took, peak)
    line = next(n for n, text in enumerate(BOMB.splitlines(), 1) if text.startswith("x5:"))
    assert out.startswith(f"{path}:{line}:") and "alias *l4 expands the document" in out


def test_aliases_within_the_budget_still_work():
    """Anchors, aliases and merge keys of an ordinary size load as before."""
    text = GOOD + "shared: &s {a: 1, b: [1, 2]}\nother: {<<: *s, b: 3}\nagain: [*s, *s]\n"
    data = load_bytes(text.encode(), "gateway.yaml", env={}).data
    assert data["other"] == {"a": 1, "b": 3} and data["again"] == [{"a": 1, "b": [1, 2]}] * 2


def test_recursive_alias_is_refused_with_a_position():
    """`&a [*a]` would make the loader recurse forever (it was a RecursionError)."""
    refused_at(GOOD + "loop: &a [1, *a]\n", 6, 14, "alias *a refers to a value that contains it")


def test_deep_nesting_is_refused_with_a_position():
    """Thousands of nested brackets are refused, not a RecursionError."""
    refused_at(GOOD + "deep: " + "[" * 5000 + "]" * 5000 + "\n", 6, 106, "nests deeper than")


def test_alias_bomb_in_keys_is_refused():
    """A complex mapping key built from aliases is counted too (keys are expanded as well)."""
    text = BOMB + "? *l8\n: x\n"
    [error] = errors_of(text)
    assert "expands the document" in error.message


# -- 13: YAML tags ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, message", [
    ("!foo bar", "unknown YAML tag !foo; gateway.yaml uses plain YAML"),
    ("!!python/name:os.system", "unknown YAML tag !!python/name:os.system"),
    ("!!python/object/apply:os.system [echo hi]", "unknown YAML tag !!python/object/apply"),
    ("!!binary aGVsbG8=", "unknown YAML tag !!binary"),
    ("!!set {a, b}", "unknown YAML tag !!set"),
    ("!foo {type: mock}", "unknown YAML tag !foo"),
    ("!!str [1, 2]", "YAML tag !!str cannot mark a list"),
    ("!!int abc", "cannot read this YAML value"),
    ("!!bool maybe", "cannot read this YAML value"),
])
def test_unknown_yaml_tags_are_config_errors_with_a_position(value, message):
    """Tags beyond plain YAML's are refused where they are written (they crashed the
    constructor, or were silently ignored on mappings)."""
    refused_at(f"version: 1\nproviders:\n  demo: {value}\n", 3, 9, message)


def test_validate_reports_an_unknown_tag_without_a_traceback(tmp_path, capsys):
    """`gateway validate` prints FILE:LINE:COL and exits 1."""
    path = tmp_path / "gateway.yaml"
    path.write_text(GOOD.replace("{type: mock}", "!!python/name:os.system"))
    assert gateway_cli(["validate", str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"{path}:3:9: unknown YAML tag !!python/name:")


# -- 12 and 13 in a running server: POST /admin/reload ---------------------------------------

def serving(path: Path) -> tuple[Reloader, httpx.AsyncClient]:
    path.write_text(GOOD)
    graph = compile_file(str(path), version=1)
    reloader = Reloader(str(path), Runtime(), GraphHolder(graph))
    app = create_app(reloader, watch_config=False)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
    return reloader, client


async def assert_rejected_and_still_serving(reloader, client, text: str, words: str) -> None:
    Path(reloader.path).write_text(text)
    started = time.perf_counter()
    reply = await client.post("/admin/reload")
    assert time.perf_counter() - started < 2.0
    assert reply.status_code == 422, reply.text
    assert reply.json()["result"] == "rejected" and words in reply.json()["errors"][0]
    config = (await client.get("/admin/config")).json()
    assert config["reloads"]["rejected"] == 1 and config["version"] == 1
    assert words in config["last_rejection"]["errors"][0]["text"]
    chat = await client.post("/v1/chat/completions", json={
        "model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200


@pytest.mark.parametrize("text, words", [
    (BOMB, "alias *l4 expands the document"),
    (GOOD + "extra: !foo bar\n", ":6:8: unknown YAML tag !foo"),
    (GOOD + "loop: &a [*a]\n", "recursive alias"),
])
async def test_hostile_config_reload_is_rejected_and_counted(tmp_path, text, words):
    """A reload of an alias bomb or an unknown tag is a rejection (422, counted, the error kept
    for /admin/config) and the last good config keeps serving; it was a 500 or a hang."""
    reloader, client = serving(tmp_path / "gateway.yaml")
    async with client:
        await assert_rejected_and_still_serving(reloader, client, text, words)


async def test_unexpected_exception_during_reload_is_a_rejection(tmp_path, monkeypatch):
    """Any exception while loading or compiling (a gateway bug) rejects the reload instead
    of answering 500; the user sees what happened and the old config serves."""
    def broken(*args, **kwargs):
        raise RuntimeError("secret-looking detail sk-123")

    monkeypatch.setattr(versioning, "compile_loaded", broken)
    reloader, client = serving(tmp_path / "gateway.yaml")
    async with client:
        await assert_rejected_and_still_serving(
            reloader, client, GOOD.replace("model: m", "model: n"),
            "the gateway failed to load this config (RuntimeError")
        reply = await client.post("/admin/reload")
    assert "sk-123" not in reply.text


# -- 14: request bodies ----------------------------------------------------------------------

REQUESTS = """
version: 1
providers:
  demo: {type: mock}
  claude: {type: anthropic, base_url: "http://127.0.0.1:9", api_key: test-key}
  command: {type: cohere, base_url: "http://127.0.0.1:9", api_key: test-key}
  google: {type: gemini, base_url: "http://127.0.0.1:9", api_key: test-key}
routes:
  chat:
    limits: {requests_per_minute: 100000, tokens_per_minute: 100000000}
    target: {provider: demo, model: m}
  claude: {target: {provider: claude, model: claude-x}}
  command: {target: {provider: command, model: command-x}}
  google: {target: {provider: google, model: gemini-x}}
"""
HI = [{"role": "user", "content": "hi"}]
PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions",
         "embeddings": "/v1/embeddings"}


async def post(tmp_path, endpoint: str, body: dict) -> httpx.Response:
    async with app_client(REQUESTS, tmp_path) as client:
        return await client.post(PATHS[endpoint], json=body)


@pytest.mark.parametrize("endpoint, body, param", [
    # the limits (and the mock): 500s before
    ("chat", {"model": "chat", "messages": HI, "stream": True, "stream_options": "x"},
     "stream_options"),
    ("chat", {"model": "chat", "messages": [{"role": "user", "content": [{"text": 5}]}]},
     "messages[0].content[0].type"),
    ("chat", {"model": "chat", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "assistant", "content": None},
        {"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "messages[2].content[0].text"),
    ("chat", {"model": "chat", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": "https://127.0.0.1/a.png", "text": 5}]}]},
     "messages[0].content[0].text"),
    ("chat", {"model": "chat", "messages": HI, "max_tokens": "100"}, "max_tokens"),
    ("chat", {"model": "chat", "messages": HI, "max_tokens": 2**64 - 1}, "max_tokens"),
    ("chat", {"model": "chat", "messages": None}, "messages"),
    ("embeddings", {"model": "chat", "input": "hi", "dimensions": "many"}, "dimensions"),
    ("embeddings", {"model": "chat", "input": ["a", 1]}, "input[1]"),
    ("embeddings", {"model": "chat", "input": None}, "input"),
    ("completions", {"model": "chat", "prompt": {"text": "hi"}}, "prompt"),
    # the Anthropic and Cohere translators: 500s before
    ("chat", {"model": "claude", "messages": HI, "reasoning_effort": ["high"]},
     "reasoning_effort"),
    ("chat", {"model": "claude", "messages": [{"role": "assistant", "content": "x",
                                                "tool_calls": 5}]},
     "messages[0].tool_calls"),
    ("chat", {"model": "command", "messages": HI, "top_p": "high"}, "top_p"),
    ("chat", {"model": "command", "messages": HI, "reasoning_effort": {}}, "reasoning_effort"),
    ("chat", {"model": "google", "messages": HI, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"properties": {}}, "description": 7}}]},
     "tools[0].function.description"),
])
async def test_wrongly_typed_fields_are_400_naming_the_field(tmp_path, endpoint, body, param):
    """A field of the wrong type is refused at the front door with a 400 in OpenAI's shape,
    `param` naming the field's path; it used to be a 500 from whichever part read it first."""
    reply = await post(tmp_path, endpoint, body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["code"] in ("invalid_type", "invalid_value", "missing_required_parameter")
    assert param in error["message"]


async def test_token_arrays_are_valid_prompts(tmp_path):
    """Token-id prompts and inputs are OpenAI-valid: the mock answers them (it crashed)."""
    completion = await post(tmp_path, "completions", {"model": "chat", "prompt": [1, 2, 3]})
    nested = await post(tmp_path, "embeddings", {"model": "chat", "input": [[1, 2], [3]]})
    assert completion.status_code == 200 and "1 2 3" in completion.json()["choices"][0]["text"]
    assert nested.status_code == 200 and len(nested.json()["data"]) == 2


async def test_translators_refuse_odd_but_valid_input_with_400(tmp_path):
    """A well-typed body a translator cannot express is its 400, not a crash: a Gemini tool
    whose JSON Schema has `properties` as a list, a mock asked for a million dimensions."""
    schema = {"type": "object", "properties": ["a"]}
    gemini = await post(tmp_path, "chat", {"model": "google", "messages": HI, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": schema}}]})
    dims = await post(tmp_path, "embeddings", {"model": "chat", "input": "x",
                                               "dimensions": 1_000_000})
    assert gemini.status_code == 400 and "properties must be an object" in gemini.text
    assert dims.status_code == 400 and dims.json()["error"]["param"] == "dimensions"


def test_huge_thinking_budget_still_builds_a_request():
    """An enormous thinking.budget_tokens goes on for Anthropic to refuse; adding it to
    max_tokens overflowed the JSON encoder's 64-bit integers (a 500)."""
    body = {"model": "m", "messages": HI, "thinking": {"type": "enabled",
                                                       "budget_tokens": 2**64 - 1}}
    translated = to_anthropic(body)
    assert orjson.dumps(translated.body) and translated.body["max_tokens"] == 4096
