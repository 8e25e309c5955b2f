"""Mid-stream rescue (route setting stream_recovery): a chat stream that breaks or stalls after
bytes reached the client is continued by a target of the route, and the client reads the
whole answer exactly once in one well-formed stream. Real HTTP against loopback fakes that
speak the wire formats (OpenAI-compatible and Anthropic), through the app in process."""

from __future__ import annotations

import json
import time

import pytest

from gateway.graph.stream_recovery import CONTINUE_PROMPT

from ..fake_continuation import ANSWER, FakeContinuation, Turn
from ..inprocess_gateway import poll
from ..providers.fake_anthropic import API_KEY, FakeAnthropic, Reply

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}"}}
  claude: {{type: anthropic, api_key: {anthropic_key}, base_url: "{anthropic_url}"}}
routes:
  rescued:
    stream_recovery: {{mode: continue}}
    fallback:
      targets:
        - target: {{provider: up, model: first}}
        - target: {{provider: up, model: second}}
  alone:
    stream_recovery: {{mode: continue, stall_timeout: 300ms}}
    target: {{provider: up, model: only}}
  idle:
    stream_recovery: {{mode: continue}}
    target: {{provider: up, model: slow, timeout: {{idle: 300ms}}}}
  to-claude:
    stream_recovery: {{mode: continue, stall_timeout: 300ms}}
    fallback:
      targets:
        - target: {{provider: up, model: first}}
        - target: {{provider: claude, model: claude-x}}
  twice:
    stream_recovery: {{mode: continue, max_restarts: 2}}
    fallback:
      targets:
        - target: {{provider: up, model: first}}
        - target: {{provider: up, model: second}}
  prefilled:
    stream_recovery: {{mode: continue, continue_with: prefill}}
    fallback:
      targets:
        - target: {{provider: up, model: first}}
        - target: {{provider: up, model: second}}
  plain:
    fallback:
      targets:
        - target: {{provider: up, model: first}}
        - target: {{provider: up, model: second}}
"""
QUESTION = [{"role": "user", "content": "count to sixty"}]


@pytest.fixture
def fake():
    server = FakeContinuation().start()
    yield server
    server.stop()


@pytest.fixture
def claude():
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture
def gw(gateway_app, fake, claude):
    return gateway_app(CONFIG.format(base_url=fake.base_url, anthropic_url=claude.base_url,
                                     anthropic_key=API_KEY))


def stream(gw, route: str, **extra) -> list[bytes]:
    """The raw SSE events of a streamed chat answer from ``route``."""
    body = {"model": route, "messages": QUESTION, "stream": True, **extra}
    with gw.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        raw = b"".join(response.iter_bytes())
    return [event + b"\n\n" for event in raw.split(b"\n\n") if event]


def payloads(events: list[bytes]) -> list[dict]:
    return [json.loads(e[len(b"data: "):]) for e in events
            if e.startswith(b"data: {")]


def text_of(events: list[bytes]) -> str:
    return "".join(c["delta"].get("content") or "" for p in payloads(events)
                   for c in p.get("choices") or ())


def error_of(events: list[bytes]) -> dict | None:
    return next((p["error"] for p in payloads(events) if "error" in p), None)


def words_of_answer(text: str, at_most: int) -> int:
    """How many words of ANSWER ``text`` is: its first k (1 <= k <= at_most) words, exactly.
    A cut connection may lose the last words the fake wrote before the gateway reads them
    (aiohttp drops what it buffered once the connection fails), so fewer may reach the client."""
    k = len(text.split())
    assert 1 <= k <= at_most and text == " ".join(ANSWER.split()[:k]), text
    return k


def test_cut_after_40_of_60_words_is_continued_by_the_next_target(gw, fake):
    """The official openai client reads the whole answer exactly once, with one finish_reason,
    the first stream's id and model throughout, and a usage chunk counting both attempts."""
    fake.script("first", Turn(cut_after=40))
    chunks = list(gw.openai().chat.completions.create(
        model="rescued", messages=QUESTION, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert {c.id for c in chunks} == {"chatcmpl-first-1"}
    assert {c.model for c in chunks} == {"first"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices
            and c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert usage.completion_tokens == 60  # 40 estimated (one a chunk) + 20 reported
    assert usage.prompt_tokens > fake_prompt_tokens(fake.requests[1])  # both prompts counted
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    continuation = fake.requests[1]
    assert continuation["model"] == "second"
    question, sent, ask = continuation["messages"]  # openai-compatible: the prompt form
    assert [question, ask] == QUESTION + [{"role": "user", "content": CONTINUE_PROMPT}]
    assert sent["role"] == "assistant"
    words_of_answer(sent["content"], 40)


def fake_prompt_tokens(body: dict) -> int:
    return sum(len(m["content"].split()) for m in body["messages"])


def test_usage_of_both_attempts_is_recorded_for_a_client_that_did_not_ask(gw, fake):
    """The gateway asks for the usage chunk (both attempts), records the sum (60 completion
    tokens), and the client, which did not ask for usage, gets no usage chunk."""
    fake.script("first", Turn(cut_after=40))
    events = stream(gw, "rescued")
    assert all(p["choices"] for p in payloads(events))  # no usage-only chunk
    assert fake.requests[1]["stream_options"] == {"include_usage": True}
    rows = poll(lambda: gw.get("/admin/usage?period=all").json()["usage"],
                lambda rows: sum(r["requests"] for r in rows) >= 1, 5, "usage never written")
    assert [(r["requests"], r["completion_tokens"]) for r in rows] == [(1, 60)]
    assert rows[0]["prompt_tokens"] > fake_prompt_tokens(fake.requests[1])


def test_rescued_stream_is_one_well_formed_stream(gw, fake):
    """One [DONE], at the end, just after the recovery comment; no second role delta; the
    request log line says status 200 and that two streams made the answer."""
    fake.script("first", Turn(cut_after=40))
    events = stream(gw, "rescued")
    assert text_of(events) == ANSWER
    assert events[-2:] == [b": x-gateway-stream-recovered attempts=2\n\n", b"data: [DONE]\n\n"]
    assert sum(e == b"data: [DONE]\n\n" for e in events) == 1
    roles = [c["delta"]["role"] for p in payloads(events) for c in p["choices"]
             if "role" in c["delta"]]
    assert roles == ["assistant"]
    assert error_of(events) is None
    logged = [json.loads(text) for text in gw.logs.text().splitlines()]
    line = next(record for record in logged if record.get("event") == "request")
    assert line["status"] == 200 and line["stream_recovered"] == 2 and line["attempts"] == 2


def test_stall_after_20_words_is_continued_by_the_same_target(gw, fake):
    """A route of one target: after 300ms without data (stall_timeout) the same target is asked
    to continue, and the client still reads the answer exactly once."""
    fake.script("only", Turn(stall_after=20))
    started = time.monotonic()
    events = stream(gw, "alone")
    assert text_of(events) == ANSWER
    assert [r["model"] for r in fake.requests] == ["only", "only"]
    assert fake.requests[1]["messages"][-2]["content"] == " ".join(ANSWER.split()[:20])
    assert time.monotonic() - started < 5  # not the fake's 10s stall


def test_a_stall_past_the_targets_idle_timeout_is_a_break_too(gw, fake):
    """Without a stall_timeout of its own, the target's timeout.idle decides."""
    fake.script("slow", Turn(stall_after=20))
    events = stream(gw, "idle")
    assert text_of(events) == ANSWER
    assert [r["model"] for r in fake.requests] == ["slow", "slow"]


def test_prefill_refused_is_asked_again_in_the_prompt_form(gw, fake, claude):
    """Anthropic takes a prefill; when it refuses one (400), the same target is asked once
    more in the prompt form, and that continuation completes the answer."""
    fake.script("first", Turn(stall_after=40))
    claude.script("claude-x",
                  Reply(status=400, error_type="invalid_request_error",
                        error_message="prefill is not supported with thinking"),
                  Reply(content=[{"type": "text", "text": " ".join(ANSWER.split()[40:])}]))
    events = stream(gw, "to-claude")
    assert text_of(events) == ANSWER
    prefill, prompt = (r.body["messages"] for r in claude.requests)
    assert prefill[-1] == {"role": "assistant", "content": " ".join(ANSWER.split()[:40])}
    assert prompt[-2] == prefill[-1]
    assert prompt[-1]["role"] == "user" and CONTINUE_PROMPT in json.dumps(prompt[-1])
    assert {p["model"] for p in payloads(events)} == {"first"}


def test_anthropic_continues_a_prefill(gw, fake, claude):
    """A prefill accepted: the continuation's text joins the sent text as the model wrote it
    (a token continuation, starting with the space)."""
    fake.script("first", Turn(stall_after=40))
    claude.script("claude-x", Reply(content=[{"type": "text",
                                             "text": " " + " ".join(ANSWER.split()[40:])}]))
    events = stream(gw, "to-claude")
    assert text_of(events) == ANSWER
    assert len(claude.requests) == 1


def test_continuation_refused_in_both_forms_ends_with_the_error_event(gw, fake, claude):
    """The prompt form refused too: the client keeps the 40 words and gets the error event
    (no [DONE]), which says why."""
    fake.script("first", Turn(stall_after=40))
    refused = Reply(status=400, error_type="invalid_request_error", error_message="no")
    claude.script("claude-x", refused, refused)
    events = stream(gw, "to-claude")
    assert text_of(events) == " ".join(ANSWER.split()[:40])
    error = error_of(events)
    assert error is not None and "stream recovery failed" in error["message"]
    assert b"data: [DONE]\n\n" not in events
    assert len(claude.requests) == 2


def test_max_restarts_used_up_ends_with_the_error_event(gw, fake):
    """max_restarts 1: a continuation that breaks as well is not continued again."""
    fake.script("first", Turn(cut_after=40))
    fake.script("second", Turn(cut_after=10))
    events = stream(gw, "rescued")
    words_of_answer(text_of(events), 50)
    error = error_of(events)
    assert error is not None and "no restart left" in error["message"]
    assert len(fake.requests) == 2


def test_two_restarts_go_round_the_targets(gw, fake):
    """max_restarts 2: the second break is continued by the next target round (the first)."""
    fake.script("first", Turn(cut_after=40))
    fake.script("second", Turn(cut_after=10))
    events = stream(gw, "twice")
    assert text_of(events) == ANSWER
    assert [r["model"] for r in fake.requests] == ["first", "second", "first"]
    assert b": x-gateway-stream-recovered attempts=3\n\n" in events


@pytest.mark.parametrize("turn", [Turn(repeat=3), Turn(start_over=True)],
                         ids=["repeats-last-words", "starts-over"])
def test_text_a_continuation_repeats_is_not_sent_twice(gw, fake, turn):
    """A continuation that repeats the end of the sent text, or the whole of it, is trimmed."""
    fake.script("first", Turn(cut_after=40))
    fake.script("second", turn)
    assert text_of(stream(gw, "rescued")) == ANSWER


def test_prefill_form_on_an_openai_compatible_target(gw, fake):
    """continue_with: prefill sends the text as a final assistant message, continued as is."""
    fake.script("first", Turn(cut_after=40))
    events = stream(gw, "prefilled")
    assert text_of(events) == ANSWER
    assert fake.requests[1]["messages"][:-1] == QUESTION
    prefill = fake.requests[1]["messages"][-1]
    assert prefill["role"] == "assistant"
    words_of_answer(prefill["content"], 40)


def test_an_error_event_mid_stream_is_continued(gw, fake):
    """An upstream `data: {"error": ...}` event in place of the next chunk counts as a break."""
    fake.script("first", Turn(error_event_after=30))
    events = stream(gw, "rescued")
    assert text_of(events) == ANSWER
    assert error_of(events) is None


def test_max_tokens_of_the_continuation_counts_what_was_sent(gw, fake):
    """The continuation may only write what the client's max_tokens leaves."""
    fake.script("first", Turn(cut_after=40))
    stream(gw, "rescued", max_tokens=100)
    sent = words_of_answer(fake.requests[1]["messages"][-2]["content"], 40)
    assert fake.requests[1]["max_tokens"] == 100 - sent


def test_a_tool_call_stream_is_not_continued(gw, fake):
    """Half a tool call cannot be continued: the error event, as without stream_recovery."""
    fake.script("first", Turn(tool_call=True))
    events = stream(gw, "rescued")
    error = error_of(events)
    assert error is not None and "tool call" in error["message"]
    assert len(fake.requests) == 1


def test_a_route_without_stream_recovery_keeps_the_error_event(gw, fake):
    """The default: the break ends the stream with the error event; nothing is asked again."""
    fake.script("first", Turn(cut_after=40))
    events = stream(gw, "plain")
    words_of_answer(text_of(events), 40)
    assert error_of(events) is not None
    assert len(fake.requests) == 1
