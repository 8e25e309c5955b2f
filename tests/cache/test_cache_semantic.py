"""Semantic mode through the app in process: prompts embedded through a normal route (the mock
provider, whose embeddings make similar sentences similar), a hit at or above the threshold
with x-gateway-cache-similarity, a miss below it or when anything but the prompt differs."""

from __future__ import annotations

CONFIG = """
version: 1
providers:
  demo: {type: mock}
cache:
  mode: semantic
  semantic: {route: embed, threshold: 0.8}
routes:
  chat: {target: {provider: demo, model: m}}
  other: {target: {provider: demo, model: o}}
  embed: {target: {provider: demo, model: e}}
"""
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def ask(gw, text: str, model: str = "chat", **extra):
    return gw.post("/v1/chat/completions", json={
        "model": model, "messages": [{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": text}], **extra})


def test_similar_prompt_is_a_hit_with_its_similarity(gateway_app):
    """A reworded question gets the stored answer; the similarity is in a header."""
    gw = gateway_app(CONFIG)
    first = ask(gw, "How do I reset my password?")
    similar = ask(gw, "How can I reset my password?")
    assert first.headers["x-gateway-cache"] == "miss"
    assert similar.headers["x-gateway-cache"] == "hit"
    assert similar.json()["id"] == first.json()["id"]
    assert 0.8 <= float(similar.headers["x-gateway-cache-similarity"]) < 1.0


def test_dissimilar_prompt_is_a_miss(gateway_app):
    """Below the threshold: answered upstream, with its own answer."""
    gw = gateway_app(CONFIG)
    first = ask(gw, "How do I reset my password?")
    other = ask(gw, "What is the capital of France?")
    assert other.headers["x-gateway-cache"] == "miss"
    assert other.json()["id"] != first.json()["id"]
    assert "x-gateway-cache-similarity" not in other.headers


def test_a_different_model_tools_or_system_prompt_is_a_miss(gateway_app):
    """Only the last user message is matched by meaning; the rest must be identical."""
    gw = gateway_app(CONFIG)
    ask(gw, "How do I reset my password?")
    other_model = ask(gw, "How can I reset my password?", model="other")
    with_tools = ask(gw, "How can I reset my password?", tools=TOOLS)
    other_params = ask(gw, "How can I reset my password?", temperature=1.5)
    other_system = gw.post("/v1/chat/completions", json={
        "model": "chat", "messages": [{"role": "system", "content": "be verbose"},
                                      {"role": "user", "content": "How can I reset my password?"}]})
    for answer in (other_model, with_tools, other_params, other_system):
        assert answer.headers["x-gateway-cache"] == "miss"


def test_a_higher_threshold_turns_the_same_pair_into_a_miss(gateway_app):
    """The threshold decides: the pair that hits at 0.8 misses at 0.95."""
    gw = gateway_app(CONFIG.replace("threshold: 0.8", "threshold: 0.95"))
    ask(gw, "How do I reset my password?")
    assert ask(gw, "How can I reset my password?").headers["x-gateway-cache"] == "miss"
    assert ask(gw, "how do i reset my password").headers["x-gateway-cache"] == "hit"


def test_semantic_without_a_route_is_a_config_error(tmp_path):
    """mode: semantic needs semantic.route: an error at the mode's position."""
    from gateway.config.compiler import compile_bytes
    from gateway.errors import ConfigErrors

    text = CONFIG.replace("  semantic: {route: embed, threshold: 0.8}\n", "")
    try:
        compile_bytes(text.encode(), "g.yaml")
    except ConfigErrors as exc:
        assert [(e.path, "semantic.route" in e.message) for e in exc.errors] == [
            ("$.cache.mode", True)]
    else:
        raise AssertionError("compiled")
