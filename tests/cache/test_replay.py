"""Stored answers and streams: a stream's chunks assemble into the whole answer (tool calls
included), and replaying a stored answer gives chunks that assemble back into it."""

from __future__ import annotations

import orjson

from gateway.middleware.cache_replay import StreamRecorder, replay_chunks

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m"}


def event(choices: list, **extra) -> bytes:
    return b"data: " + orjson.dumps({**HEAD, "choices": choices, **extra}) + b"\n\n"


def test_tool_call_deltas_assemble_into_one_call():
    """Tool-call name and arguments arriving in pieces (split across byte chunks too) make one
    call; usage is kept; the answer is complete only after [DONE]."""
    stream = b"".join([
        event([{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}]),
        event([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                        "function": {"name": "get_", "arguments": ""}}]},
                "finish_reason": None}]),
        event([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {
            "name": "weather", "arguments": '{"city": '}}]}, "finish_reason": None}]),
        event([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {
            "arguments": '"Paris"}'}}]}, "finish_reason": None}]),
        event([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
        event([], usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}),
    ])
    recorder = StreamRecorder("chat")
    for i in range(0, len(stream), 17):
        recorder.feed(stream[i:i + 17])
    assert recorder.answer() is None  # no [DONE] yet
    recorder.feed(b"data: [DONE]\n\n")
    answer = recorder.answer()
    assert answer["choices"][0]["message"]["tool_calls"] == [
        {"type": "function", "id": "call_1",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["usage"]["total_tokens"] == 8 and answer["id"] == "chatcmpl-1"


def test_replay_assembles_back_into_the_stored_answer():
    """replay_chunks(answer) fed to a StreamRecorder gives the answer back (chat and completions)."""
    chat = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there",
                                                 "tool_calls": [{"id": "t", "type": "function",
                                                                 "function": {"name": "f", "arguments": "{}"}}]},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    text = {"id": "t", "object": "text_completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "text": "once upon", "finish_reason": "length", "logprobs": None}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    for endpoint, answer in (("chat", chat), ("completions", text)):
        recorder = StreamRecorder(endpoint)
        for piece in replay_chunks(endpoint, answer, include_usage=True):
            recorder.feed(piece)
        assert recorder.answer() == answer


def test_an_error_event_is_never_stored():
    """A stream that carries an error event is not a complete answer."""
    recorder = StreamRecorder("chat")
    recorder.feed(event([{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]))
    recorder.feed(b'data: {"error": {"message": "upstream died"}}\n\ndata: [DONE]\n\n')
    assert recorder.answer() is None
