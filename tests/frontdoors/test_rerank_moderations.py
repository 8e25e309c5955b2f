"""POST /v1/rerank (Cohere's request and answer) and POST /v1/moderations (OpenAI's) through
the real app: to Cohere (documents given as objects become the strings its v2 API takes), to a
vLLM-style server, with fallbacks, keys and usage; a route whose targets cannot rerank is a
clear 400; the official openai client's moderations call."""

from __future__ import annotations

import pytest

from ..fake_upstream import Behaviour
from ..providers.fake_cohere import FakeCohere

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  co: {{type: cohere, base_url: "{cohere}", api_key: cohere-test-key}}
  local: {{type: vllm, base_url: "{openai}"}}
  oai: {{type: openai, base_url: "{openai}", api_key: upstream-secret}}
  demo: {{type: mock}}
routes:
  rerank-co: {{target: {{provider: co, model: rerank-v3.5}}}}
  rerank-local:
    fallback:
      targets:
        - target: {{provider: local, model: bge-reranker}}
        - target: {{provider: co, model: rerank-v3.5}}
  chat-only: {{target: {{provider: demo, model: m}}}}
  no-rerank: {{target: {{provider: oai, model: gpt-4o}}}}
  moderation: {{target: {{provider: oai, model: omni-moderation-latest}}}}
"""
DOCS = ["Paris is the capital of France", "Bananas are yellow", "France borders Spain"]


@pytest.fixture
def cohere():
    server = FakeCohere().start()
    yield server
    assert server.rejections == []
    server.stop()


@pytest.fixture
def gw(cohere, upstream, gateway_app):
    return gateway_app(CONFIG.format(cohere=cohere.base_url, openai=upstream.base_url))


def test_rerank_with_cohere(gw, cohere):
    """Cohere's answer comes back as it is; documents given as {"text"} objects reach Cohere
    as strings, and return_documents puts them in the results."""
    answer = gw.post("/v1/rerank", json={
        "model": "rerank-co", "query": "capital of France", "top_n": 2,
        "documents": [{"text": d} for d in DOCS], "return_documents": True})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["index"] for r in results] == [0, 2]
    assert results[0]["document"] == {"text": DOCS[0]}
    assert answer.json()["meta"]["billed_units"] == {"search_units": 1}
    assert answer.headers["x-gateway-target"] == "co/rerank-v3.5"
    assert cohere.requests[-1].body == {"model": "rerank-v3.5", "query": "capital of France",
                                        "top_n": 2, "documents": DOCS}


def test_rerank_with_a_local_server_and_fallback(gw, upstream, cohere):
    """A vLLM target answers at {base_url}/rerank; when it fails, the route falls back to
    Cohere within the same request."""
    first = gw.post("/v1/rerank", json={"model": "rerank-local", "query": "yellow bananas",
                                         "documents": DOCS})
    assert first.status_code == 200 and first.json()["results"][0]["index"] == 1
    assert upstream.requests[-1].path == "/v1/rerank"
    upstream.script("bge-reranker", Behaviour(status=503))
    second = gw.post("/v1/rerank", json={"model": "rerank-local", "query": "yellow bananas",
                                          "documents": DOCS})
    assert second.status_code == 200
    assert second.headers["x-gateway-target"] == "co/rerank-v3.5"
    assert second.headers["x-gateway-attempts"] == "2"


@pytest.mark.parametrize("route", ["chat-only", "no-rerank"])
def test_a_route_that_cannot_rerank_is_a_clear_400(gw, upstream, route):
    answer = gw.post("/v1/rerank", json={"model": route, "query": "q", "documents": DOCS})
    assert answer.status_code == 400
    assert "cannot serve rerank" in answer.json()["error"]["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("body, param", [
    ({"model": "rerank-co", "documents": DOCS}, "query"),
    ({"model": "rerank-co", "query": "q", "documents": []}, "documents"),
    ({"model": "rerank-co", "query": "q", "documents": [1, 2]}, "documents"),
    ({"model": "rerank-co", "query": "q", "documents": DOCS, "top_n": 0}, "top_n"),
    ({"query": "q", "documents": DOCS}, "model"),
])
def test_bad_rerank_requests(gw, body, param):
    """A 400 naming the field, in its message and in OpenAI's ``param``."""
    answer = gw.post("/v1/rerank", json=body)
    error = answer.json()["error"]
    assert answer.status_code == 400 and param in error["message"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_unknown_rerank_model_is_a_404(gw):
    answer = gw.post("/v1/rerank", json={"model": "nope", "query": "q", "documents": DOCS})
    assert answer.status_code == 404 and "nope" in answer.json()["error"]["message"]


def test_moderations_with_the_openai_client(gw, upstream):
    with gw.openai() as client:
        result = client.moderations.create(model="moderation",
                                           input=["I will kill the process", "hello"])
    assert [r.flagged for r in result.results] == [True, False]
    sent = upstream.requests[-1]
    assert sent.path == "/v1/moderations" and sent.body["model"] == "omni-moderation-latest"
    assert sent.headers["Authorization"] == "Bearer upstream-secret"


def test_moderations_route_that_cannot_moderate(gw):
    answer = gw.post("/v1/moderations", json={"model": "rerank-co", "input": "x"})
    assert answer.status_code == 400 and "cannot serve moderations" in answer.text
    missing = gw.post("/v1/moderations", json={"model": "moderation"})
    assert missing.status_code == 400 and "input" in missing.json()["error"]["message"]
