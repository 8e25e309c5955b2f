"""output-guard on streamed answers: whole events only, the event that breaks a rule held back,
fallback ends the stream with GatewayError, flag adds an SSE comment line."""

from __future__ import annotations

import json

import pytest

from gateway.errors import GatewayError
from gateway.graph.context import RequestContext
from gateway_output_guard import Flag, GuardState, StreamFallback
from gateway_output_guard.rules import Rules
from gateway_output_guard.stream import WINDOW, StreamGuard


def event(content: str | None, finish: str | None = None, index: int = 0) -> bytes:
    delta = {} if content is None else {"content": content}
    payload = {"object": "chat.completion.chunk",
               "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def stream_of(text: str, size: int = 4) -> bytes:
    return (b"".join(event(text[i:i + size]) for i in range(0, len(text), size))
            + event(None, "stop") + b"data: [DONE]\n\n")


class Failed(Exception):
    pass


def guard(config: dict) -> tuple[StreamGuard, list[str]]:
    reasons: list[str] = []

    def on_fail(reason: str) -> bytes:
        reasons.append(reason)
        raise Failed(reason)

    return StreamGuard(Rules.from_config(config), on_fail), reasons


def feed_all(g: StreamGuard, raw: bytes, cut: int) -> bytes:
    out = b"".join(g.feed(raw[i:i + cut]) for i in range(0, len(raw), cut))
    return out + g.close()


def text_of(raw: bytes) -> str:
    return "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                   for e in raw.decode().split("\n\n") if e.startswith("data: {"))


@pytest.mark.parametrize("cut", [1, 5, 1000])
def test_a_clean_stream_passes_unchanged(cut):
    """A stream that breaks no rule comes out byte for byte."""
    g, reasons = guard({"deny": ["forbidden"], "max_length": 100})
    raw = stream_of("a perfectly fine answer")
    assert feed_all(g, raw, cut) == raw and reasons == []


@pytest.mark.parametrize("size", [1, 3, 4, 9])
def test_deny_split_across_events_is_caught(size):
    """A denied word cut across events is found as soon as its last piece arrives."""
    g, reasons = guard({"deny": ["forbidden"]})
    sent = []
    with pytest.raises(Failed):
        for raw in [event(p) for p in _pieces("this is forbidden text", size)]:
            sent.append(g.feed(raw))
    assert reasons == ["deny[0] matched"]
    assert "forbidden" not in text_of(b"".join(sent))  # the completing event was held back


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def test_only_whole_events_are_sent_before_the_failure():
    """Bytes of a half-received event are never sent, so the error event lands cleanly."""
    g, _ = guard({"deny": ["stop"]})
    first = g.feed(event("go on ") + event("now st")[:20])
    assert first == event("go on ")
    with pytest.raises(Failed):
        g.feed(event("now st")[20:])  # the event is whole now, and the next one completes "stop"
        g.feed(event("op"))


def test_events_before_the_broken_one_in_the_same_chunk_are_sent_first():
    """Good events sharing a chunk with the broken one go out; the error comes on the next call."""
    g, reasons = guard({"deny": ["stop"]})
    out = g.feed(event("go on ") + event("st") + event("op") + event(" more"))
    assert out == event("go on ") + event("st")
    assert reasons == ["deny[0] matched"]
    with pytest.raises(Failed):
        g.feed(event("later"))
    g2, _ = guard({"deny": ["stop"]})
    assert g2.feed(event("go ") + event("stop")) == event("go ")
    with pytest.raises(Failed):
        g2.close()  # the end of the stream delivers the deferred error


def test_a_failure_at_the_end_of_the_stream_is_raised_at_once():
    """close() is the last call, so a rule broken there is raised, never deferred."""
    g, _ = guard({"json_schema": {"type": "object"}})
    assert g.feed(event("[1]")) == event("[1]")
    with pytest.raises(Failed):
        g.close()


def test_max_length_fails_when_exceeded():
    """max_length breaks as soon as the text so far is longer."""
    g, reasons = guard({"max_length": 10})
    with pytest.raises(Failed):
        feed_all(g, stream_of("twelve chars"), cut=1000)
    assert reasons == ["max_length 10 exceeded (12 characters)"]


def test_json_schema_is_checked_when_the_choice_finishes():
    """json_schema cannot judge a half answer: it is checked at finish_reason."""
    g, reasons = guard({"json_schema": {"type": "object", "required": ["name"]}})
    body = stream_of('{"age": 3}')
    events = body.split(b"\n\n")
    out = g.feed(b"\n\n".join(events[:-3]) + b"\n\n")  # every content event
    assert text_of(out) == '{"age": 3}' and reasons == []
    with pytest.raises(Failed):
        g.feed(event(None, "stop"))
    assert reasons == ["json_schema: 'name' is a required property"]


def test_json_schema_checked_at_done_without_finish_reason():
    """Without a finishing chunk, the check runs before [DONE] is sent."""
    g, reasons = guard({"json_schema": {"type": "object"}})
    g.feed(event("[1, 2]"))
    with pytest.raises(Failed):
        g.feed(b"data: [DONE]\n\n")
    assert reasons[0].startswith("json_schema:")


def test_json_schema_checked_at_stream_end():
    """A stream that ends without finish_reason or [DONE] is checked at its end."""
    g, reasons = guard({"json_schema": {"type": "object"}})
    g.feed(event("not json"))
    with pytest.raises(Failed):
        g.close()
    assert reasons[0].startswith("json_schema: the answer is not valid JSON")


def test_long_matches_are_caught_by_the_final_search():
    """A match longer than the search window is still found when the choice finishes."""
    g, reasons = guard({"deny": [r"BEGIN(?:x*)END"]})
    g.feed(event("BEGIN"))
    for _ in range(WINDOW // 100 + 2):
        g.feed(event("x" * 100))
    g.feed(event("END"))  # the window no longer reaches BEGIN
    assert reasons == []
    with pytest.raises(Failed):
        g.feed(event(None, "stop"))
    assert reasons == ["deny[0] matched"]


def test_choices_are_checked_separately():
    """Each choice has its own text; the reason names the choice when there are several."""
    g, reasons = guard({"deny": ["ab"]})
    g.feed(event("a", index=0) + event("b", index=1))  # "a" + "b" across choices: no match
    with pytest.raises(Failed):
        g.feed(event("b", index=0))
    assert reasons == ["choices[0]: deny[0] matched"]


def test_other_events_pass_through():
    """Comments, usage chunks and non-JSON data pass untouched."""
    g, reasons = guard({"max_length": 1})
    raw = b": ping\n\n" + b'data: {"choices": [], "usage": {}}\n\n' + b"data: hi\n\n"
    assert feed_all(g, raw, cut=3) == raw and reasons == []


# -- the middleware objects ------------------------------------------------------------------

def ctx() -> RequestContext:
    return RequestContext(endpoint="chat", body={}, route="r", request_id="q", stream=True)


def test_fallback_raises_a_guardrail_error():
    """fallback: the stream ends with a guardrail GatewayError (the server's SSE error event)."""
    mw, c = StreamFallback(Rules.from_config({"deny": ["bad"]}), "output-guard"), ctx()
    assert mw.on_chunk(c, event("all good ")) == event("all good ")
    with pytest.raises(GatewayError) as info:
        mw.on_chunk(c, event("but bad"))
    err = info.value
    assert (err.status, err.type, err.code) == (503, "guardrail_error", "guardrail")
    assert err.message == "the answer was refused by plugin 'output-guard': deny[0] matched"
    assert c.state_for(GuardState).rule == "deny[0] matched"


def test_flag_adds_a_comment_and_keeps_the_answer():
    """flag: an SSE comment names the rule, the answer streams on in full."""
    mw, c = Flag(Rules.from_config({"max_length": 5}), "output-guard"), ctx()
    raw = stream_of("longer than five", size=3)
    out = b"".join(mw.on_chunk(c, raw[i:i + 7]) for i in range(0, len(raw), 7))
    out += mw.on_stream_end(c)
    assert text_of(out) == "longer than five"
    assert out.count(b": x-gateway-guard: max_length 5 exceeded (6 characters)\n\n") == 1
    assert out.endswith(b"data: [DONE]\n\n")
    assert c.state_for(GuardState).rule == "max_length 5 exceeded (6 characters)"
