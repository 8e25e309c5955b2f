"""Restoring placeholders in streamed answers: SSE re-framing, placeholders split across events
and across network chunks, holding back and flushing."""

from __future__ import annotations

import json

import pytest

from gateway.graph.context import RequestContext
from gateway_pii_redact import PiiState, Restorer
from gateway_pii_redact.mask import Vault
from gateway_pii_redact.stream import SSEFramer, StreamRestorer

EMAIL, PHONE = "jane@example.com", "+49 30 1234567"


def vault() -> Vault:
    v = Vault(("email", "phone", "card", "iban", "ip"))
    assert v.mask(f"{EMAIL} {PHONE}") == "[EMAIL_1] [PHONE_1]"
    return v


def chunk_event(content: str | None, finish: str | None = None, index: int = 0) -> bytes:
    delta = {} if content is None else {"content": content}
    payload = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def stream_of(text: str, size: int, finish: bool = True, done: bool = True) -> bytes:
    raw = b"".join(chunk_event(text[i:i + size]) for i in range(0, len(text), size))
    if finish:
        raw += chunk_event(None, "stop")
    return raw + (b"data: [DONE]\n\n" if done else b"")


def run(raw: bytes, cut: int, v: Vault | None = None) -> bytes:
    restorer = StreamRestorer(v or vault())
    out = b"".join(restorer.feed(raw[i:i + cut]) for i in range(0, len(raw), cut))
    return out + restorer.close()


def contents(raw: bytes) -> tuple[str, list[dict]]:
    """The text a client would assemble, and every JSON event."""
    events = [json.loads(e[6:]) for e in raw.decode().split("\n\n")
              if e.startswith("data: {")]
    text = "".join(c["delta"].get("content") or "" if "delta" in c else c.get("text", "")
                   for e in events for c in e["choices"])
    return text, events


ANSWER = "Sure: write to [EMAIL_1] or call [PHONE_1]. Thanks [EMAIL_1]!"
RESTORED = f"Sure: write to {EMAIL} or call {PHONE}. Thanks {EMAIL}!"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11, 64])
def test_placeholders_split_across_events(size):
    """Whatever the piece size, the client assembles the restored answer."""
    text, _ = contents(run(stream_of(ANSWER, size), cut=10_000))
    assert text == RESTORED


@pytest.mark.parametrize("cut", [1, 2, 7, 33])
def test_events_split_across_network_chunks(cut):
    """Events cut anywhere into chunks are re-framed before restoring."""
    text, events = contents(run(stream_of(ANSWER, 4), cut=cut))
    assert text == RESTORED
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


def test_no_placeholder_text_ever_reaches_the_client():
    """Not even a piece of a placeholder is sent: partial ones are held back."""
    raw = run(stream_of(ANSWER, 3), cut=5)
    assert b"[EM" not in raw and b"[PH" not in raw and b"_1]" not in raw


def test_held_text_rides_on_the_finishing_chunk():
    """A partial placeholder still held when the choice finishes is sent with that chunk."""
    raw = (chunk_event("mail [EMA") + chunk_event("IL_1") + chunk_event("]", "stop")
           + b"data: [DONE]\n\n")
    text, events = contents(run(raw, cut=1000))
    assert text == f"mail {EMAIL}"
    assert events[-1]["choices"][0]["delta"]["content"] == f"{EMAIL}"


def test_held_text_flushed_before_done():
    """Without a finishing chunk, what is held is sent in its own chunk before [DONE]."""
    raw = chunk_event("almost [EMAIL_") + b"data: [DONE]\n\n"
    out = run(raw, cut=1000)
    text, events = contents(out)
    assert text == "almost [EMAIL_"  # never completed: the text goes out as it was
    assert out.endswith(b"data: [DONE]\n\n")
    assert events[-1]["id"] == "c1" and events[-1]["model"] == "m"


def test_held_text_flushed_at_stream_end_without_done():
    """A stream that just ends (no [DONE], last event unterminated) still delivers everything."""
    raw = chunk_event("call [PHONE_")[:-2] + b"\n"  # the last event lacks its blank line
    restorer = StreamRestorer(vault())
    out = restorer.feed(raw)
    assert out == b""  # incomplete event: held
    out += restorer.feed(b"") + restorer.close()
    text, _ = contents(out)
    assert text == "call [PHONE_"


def test_a_bracket_that_is_no_placeholder_is_not_held():
    """Text such as "[x" or "list[0" goes on at once."""
    restorer = StreamRestorer(vault())
    out = restorer.feed(chunk_event("a [x") + chunk_event("list[0"))
    text, _ = contents(out)
    assert text == "a [xlist[0"


def test_unknown_placeholders_pass_unchanged():
    """A placeholder this request never handed out is left as the model wrote it."""
    text, _ = contents(run(stream_of("see [EMAIL_7] and [EMAIL_1]", 2), cut=100))
    assert text == f"see [EMAIL_7] and {EMAIL}"


def test_choices_are_restored_independently():
    """Two choices interleaved, each with a split placeholder."""
    raw = (chunk_event("[EMA", index=0) + chunk_event("[PHO", index=1)
           + chunk_event("IL_1]", index=0) + chunk_event("NE_1]", index=1)
           + chunk_event(None, "stop", 0) + chunk_event(None, "stop", 1) + b"data: [DONE]\n\n")
    _, events = contents(run(raw, cut=9))
    by_choice: dict[int, str] = {}
    for e in events:
        for c in e["choices"]:
            piece = c["delta"].get("content") or ""
            by_choice[c["index"]] = by_choice.get(c["index"], "") + piece
    assert by_choice == {0: EMAIL, 1: PHONE}


def test_legacy_completion_stream():
    """text_completion chunks (choices[].text) are restored too."""
    def ev(text, finish=None):
        payload = {"object": "text_completion", "choices": [{"index": 0, "text": text,
                                                              "finish_reason": finish}]}
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    raw = ev("to [EM") + ev("AIL_1] ok") + ev("", "stop") + b"data: [DONE]\n\n"
    text, _ = contents(run(raw, cut=3))
    assert text == f"to {EMAIL} ok"


def test_other_events_pass_byte_for_byte():
    """Comments, events without data, usage chunks and non-JSON data are not touched."""
    others = (b": keep-alive\n\n" + b"event: ping\nid: 7\n\n"
              + b'data: {"choices": [], "usage": {"total_tokens": 3}}\n\n' + b"data: hello\n\n")
    assert run(others, cut=4) == others


def test_crlf_framing():
    """Events separated by CRLF blank lines are framed too."""
    raw = stream_of(ANSWER, 4).replace(b"\n\n", b"\r\n\r\n")
    restorer = StreamRestorer(vault())
    out = b"".join(restorer.feed(raw[i:i + 6]) for i in range(0, len(raw), 6)) + restorer.close()
    assert contents(out.replace(b"\r\n\r\n", b"\n\n"))[0] == RESTORED


def test_framer_keeps_partial_events():
    """The framer returns only whole events and keeps the rest."""
    framer = SSEFramer()
    assert framer.feed(b"data: 1\n\ndata: 2\n") == [b"data: 1\n\n"]
    assert framer.feed(b"\ndata: 3") == [b"data: 2\n\n"]
    assert framer.rest() == b"data: 3"


def test_on_chunk_is_a_pass_through_without_a_vault():
    """A request where nothing was masked streams byte for byte, nothing buffered."""
    ctx = RequestContext(endpoint="chat", body={}, route="r")
    partial = chunk_event("hello [EMAIL_1]")[:10]
    assert Restorer().on_chunk(ctx, partial) is partial
    assert Restorer().on_stream_end(ctx) == b""


def test_on_chunk_uses_the_request_vault():
    """With a vault in the request's PiiState, on_chunk and on_stream_end restore the stream."""
    ctx = RequestContext(endpoint="chat", body={}, route="r")
    ctx.keep_state(PiiState({"email": 1}, vault()))
    restorer = Restorer()
    raw = stream_of(ANSWER, 5)
    out = b"".join(restorer.on_chunk(ctx, raw[i:i + 8]) for i in range(0, len(raw), 8))
    out += restorer.on_stream_end(ctx)
    assert contents(out)[0] == RESTORED
