"""A body nested deeper than the gateway can write again is a 400, never a 500: orjson reads
1024 levels but writes 254, and the gateway writes every body again (the cache key, the
upstream request, the request log, pii-redact, a batch's results). Chat (to translating and
OpenAI-shaped providers), /v1/responses, /v1/messages and batch lines, at the limit and past
it."""

from __future__ import annotations

import pytest

from gateway.json_depth import MAX_DEPTH

CONFIG = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  demo: {{type: mock}}
  claude: {{type: anthropic, base_url: "http://127.0.0.1:9/v1", api_key: sk-ant-never-used-0}}
  gem: {{type: gemini, base_url: "http://127.0.0.1:9/v1", api_key: sk-gem-never-used-0}}
routes:
  chat: {{target: {{provider: demo, model: m}}}}
  claude: {{target: {{provider: claude, model: c}}}}
  gem: {{target: {{provider: gem, model: g}}}}
cache: {{mode: simple, ttl: 1h}}
observability:
  request_log: {{log_bodies: true}}
plugins:
  - {{name: pii-redact, config: {{mode: mask}}}}
"""


def nested(levels: int, kind: str = "object") -> str:
    """``levels`` containers inside each other (the outermost counted)."""
    if kind == "array":
        return "[" * levels + "]" * levels
    return '{"a":' * levels + "1" + "}" * levels


def chat(route: str, field: str, value: str) -> str:
    base = f'"model":"{route}","messages":[{{"role":"user","content":"hi"}}]'
    fields = {
        "metadata": f',"metadata":{value}',
        "tools": f',"tools":[{{"type":"function","function":{{"name":"f","parameters":{value}}}}}]',
        "schema": f',"response_format":{{"type":"json_schema","json_schema":{{"name":"x",'
                  f'"schema":{value}}}}}',
        "unknown": f',"x":{value}'}
    return "{" + base + fields[field] + "}"


@pytest.fixture
def gw(gateway_app, tmp_path):
    return gateway_app(CONFIG.format(data=tmp_path / "data"))


def post(gw, path: str, body: str):
    return gw.post(path, content=body.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize("levels", [300, 1000])
@pytest.mark.parametrize("route", ["chat", "claude", "gem"])
@pytest.mark.parametrize("field", ["metadata", "tools", "schema", "unknown"])
def test_a_deep_chat_body_is_a_400(gw, route, field, levels):
    for kind in ("object", "array"):
        answer = post(gw, "/v1/chat/completions", chat(route, field, nested(levels, kind)))
        assert answer.status_code == 400, answer.text[:300]
        assert f"deeper than {MAX_DEPTH}" in answer.json()["error"]["message"]


def test_the_limit_itself_is_served(gw):
    """A value that brings the body to exactly MAX_DEPTH levels is answered (the body object
    and the metadata object are two of them)."""
    answer = post(gw, "/v1/chat/completions", chat("chat", "unknown", nested(MAX_DEPTH - 1)))
    assert answer.status_code == 200, answer.text[:300]
    again = post(gw, "/v1/chat/completions", chat("chat", "unknown", nested(MAX_DEPTH)))
    assert again.status_code == 400, again.text[:300]


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/responses", '{"model":"chat","input":"hi","metadata":%s}'),
    ("/v1/responses", '{"model":"chat","input":"hi","tools":[{"type":"function","name":"f",'
                      '"parameters":%s}]}'),
    ("/v1/messages", '{"model":"chat","max_tokens":5,"messages":[{"role":"user",'
                     '"content":"hi"}],"metadata":%s}'),
    ("/v1/messages", '{"model":"chat","max_tokens":5,"messages":[{"role":"user",'
                     '"content":"hi"}],"tools":[{"name":"f","input_schema":%s}]}'),
    ("/v1/embeddings", '{"model":"chat","input":"hi","x":%s}'),
])
def test_a_deep_body_is_a_400_at_every_door(gw, path, body):
    answer = post(gw, path, body % nested(500))
    assert answer.status_code == 400, answer.text[:300]


def test_a_deep_batch_line_is_refused_at_upload(gw):
    """A batch line nested too deep would fail when the gateway sends it (or hands the file
    to a provider): the upload names the line instead."""
    line = chat("chat", "unknown", nested(300))
    answer = gw.post("/v1/files", data={"purpose": "batch"}, files={"file": (
        "b.jsonl", ('{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":'
                    + line + "}\n").encode())})
    assert answer.status_code == 400, answer.text[:300]
    assert f"line 1: nests deeper than {MAX_DEPTH}" in answer.json()["error"]["message"]
