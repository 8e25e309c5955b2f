"""Streamed replay through the official openai client (app in process, mock provider): a
stored answer replayed as a valid stream, with a usage chunk when asked; a live stream stored
once complete."""

from __future__ import annotations

import json

CONFIG = """
version: 1
providers:
  demo: {type: mock}
cache: {mode: simple}
routes:
  chat: {target: {provider: demo, model: m}}
"""
MESSAGES = [{"role": "user", "content": "tell me about caches"}]


def test_stored_answer_is_replayed_as_a_stream(gateway_app):
    """A non-streamed answer, then the same request streamed: the client assembles the same
    text and finish reason from chunks of the live shape; usage only when asked."""
    gw = gateway_app(CONFIG)
    with gw.openai() as client:
        first = client.chat.completions.create(model="chat", messages=MESSAGES)
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES,
                                                               stream=True)
        assert raw.headers["x-gateway-cache"] == "hit"
        chunks = list(raw.parse())
        with_usage = list(client.chat.completions.create(
            model="chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == first.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.object == "chat.completion.chunk" and c.id == first.id for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert with_usage[-1].choices == [] and with_usage[-1].usage == first.usage


def test_live_stream_is_stored_once_complete(gateway_app):
    """A streamed miss is stored when it ends: the same request (not streamed) is a hit with
    the streamed text and usage."""
    gw = gateway_app(CONFIG)
    with gw.openai() as client:
        live = list(client.chat.completions.create(model="chat", messages=MESSAGES, stream=True))
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    answer = raw.parse()
    assert raw.headers["x-gateway-cache"] == "hit"
    assert answer.id == live[0].id
    assert answer.choices[0].message.content == "".join(
        c.choices[0].delta.content or "" for c in live if c.choices)
    assert answer.choices[0].finish_reason == "stop" and answer.usage.completion_tokens > 0


def test_replayed_stream_has_the_live_chunk_shapes(gateway_app):
    """A streamed hit is made of the live stream's chunk shapes: the role chunk first, content
    deltas, a finish chunk, the usage chunk (empty choices) when asked, then [DONE]; the
    content is the live content (the replay sends it in one delta, not word by word)."""
    gw = gateway_app(CONFIG)
    body = {"model": "chat", "messages": MESSAGES, "stream": True,
            "stream_options": {"include_usage": True}}
    miss = gw.post("/v1/chat/completions", json=body)
    live = events(miss)
    hit = gw.post("/v1/chat/completions", json=body)
    assert miss.headers["x-gateway-cache"] == "miss" and hit.headers["x-gateway-cache"] == "hit"
    assert hit.headers["content-type"].startswith("text/event-stream")
    replay = events(hit)
    assert replay[-1] == live[-1] == "[DONE]"
    replay, live = replay[:-1], live[:-1]
    assert replay[0]["choices"] == live[0]["choices"]  # role, empty content
    assert replay[-2]["choices"] == live[-2]["choices"]  # the finish reason
    assert replay[-1] == live[-1]  # the usage chunk, whole
    assert content(replay) == content(live)
    assert {tuple(sorted(e)) for e in replay} == {tuple(sorted(e)) for e in live}


def events(response) -> list:
    out = []
    for event in response.text.split("\n\n"):
        if event:
            assert event.startswith("data: ")
            data = event[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def content(chunks: list) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
