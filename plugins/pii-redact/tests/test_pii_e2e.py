"""pii-redact end to end: the gateway (in process), the plugin found through its entry point,
and an upstream that echoes the prompt back (streams cut placeholders across events)."""

from __future__ import annotations

import json

import openai
import pytest

from tests.cli_runner import run_cli

EMAIL, PHONE, CARD = "jane.doe@example.com", "+49 30 1234567", "4111 1111 1111 1111"
IBAN, IP = "DE89 3704 0044 0532 0130 00", "192.168.10.20"
VALUES = (EMAIL, PHONE, CARD, IBAN, IP, "4111111111111111", "jane.doe")
PROMPT = (f"Please write to {EMAIL} or call {PHONE}. Pay with card {CARD} or to {IBAN}; "
          f"the server is {IP}. Thanks, {EMAIL}!")

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}", api_key: upstream-key}}
routes:
  chat: {{target: {{provider: up, model: echo-model}}}}
  embed: {{target: {{provider: up, model: embed-model}}}}
plugins:
  - name: pii-redact
    config: {config}
"""


@pytest.fixture
def start(echo, gateway_app):
    def run(config: str):
        return gateway_app(CONFIG.format(base_url=echo.base_url, config=config))
    return run


def client(gw) -> openai.OpenAI:
    return gw.openai()


def sent_upstream(echo) -> str:
    """Everything the upstream received, as one string."""
    return json.dumps([r.body for r in echo.requests])


def assert_no_values(text: str) -> None:
    for value in VALUES:
        assert value not in text, f"a detected value leaked: {value[:4]}..."


def test_mask_sends_no_personal_data_upstream(start, echo):
    """mask: the upstream sees placeholders only, in every message and content part."""
    gw = start("{mode: mask}")
    reply = client(gw).chat.completions.create(model="chat", messages=[
        {"role": "system", "content": f"The user's e-mail is {EMAIL}."},
        {"role": "user", "content": [{"type": "text", "text": PROMPT}]},
    ])
    upstream = sent_upstream(echo)
    assert_no_values(upstream)
    for placeholder in ("[EMAIL_1]", "[PHONE_1]", "[CARD_1]", "[IBAN_1]", "[IP_1]"):
        assert placeholder in upstream
    # Without restore, the client sees the placeholders the upstream echoed.
    assert reply.choices[0].message.content.startswith("The user's e-mail is [EMAIL_1].")
    assert_no_values(gw.log())


def test_restore_whole_answer(start, echo):
    """mask + restore: the answer gets the original values back."""
    gw = start("{mode: mask, restore: true}")
    reply = client(gw).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": PROMPT}])
    assert reply.choices[0].message.content == PROMPT
    assert_no_values(sent_upstream(echo))
    assert "[EMAIL_1]" in sent_upstream(echo)
    assert_no_values(gw.log())


def test_restore_streamed_answer(start, echo):
    """mask + restore, streamed 3 characters per event: the client assembles the original."""
    gw = start("{mode: mask, restore: true}")
    stream = client(gw).chat.completions.create(
        model="chat", stream=True, messages=[{"role": "user", "content": PROMPT}])
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == PROMPT
    assert len(pieces) > 20  # really streamed in small pieces
    assert_no_values(sent_upstream(echo))
    assert_no_values(gw.log())


def test_streamed_answer_never_shows_a_placeholder_piece(start, echo):
    """On the wire, no fragment of a placeholder reaches the client."""
    gw = start("{mode: mask, restore: true}")
    body = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    with gw.stream("POST", "/v1/chat/completions", json=body) as r:
        raw = b"".join(r.iter_bytes())
    assert r.status_code == 200
    assert b"[EMA" not in raw and b"[PHO" not in raw and b"_1]" not in raw
    assert raw.endswith(b"data: [DONE]\n\n")


def test_legacy_completions_masked_and_restored(start, echo):
    """The legacy prompt is masked and the text answer restored, whole and streamed."""
    gw = start("{mode: mask, restore: true}")
    c = client(gw)
    whole = c.completions.create(model="chat", prompt=PROMPT)
    assert whole.choices[0].text == PROMPT
    streamed = "".join(ch.choices[0].text for ch in
                       c.completions.create(model="chat", prompt=PROMPT, stream=True) if ch.choices)
    assert streamed == PROMPT
    assert_no_values(sent_upstream(echo))


def test_embeddings_input_masked(start, echo):
    """Embeddings input is masked before it goes upstream."""
    gw = start("{mode: mask}")
    client(gw).embeddings.create(model="embed", input=[PROMPT, "nothing here"])
    sent = echo.requests[-1].body["input"]
    assert_no_values(json.dumps(sent))
    assert sent[1] == "nothing here"


def test_only_configured_kinds(start, echo):
    """kinds: [email] masks e-mail addresses and leaves the rest."""
    gw = start("{mode: mask, kinds: [email]}")
    client(gw).chat.completions.create(model="chat", messages=[{"role": "user", "content": PROMPT}])
    sent = sent_upstream(echo)
    assert EMAIL not in sent and PHONE in sent and IP in sent


def test_block_answers_400_and_sends_nothing(start, echo):
    """block: 400 in OpenAI's shape naming the kinds; the upstream is never called."""
    gw = start("{mode: block}")
    r = gw.post("/v1/chat/completions", json={
        "model": "chat", "messages": [{"role": "user", "content": f"{CARD} {PHONE} {EMAIL}"}]})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "pii_detected" and error["type"] == "invalid_request_error"
    assert "email, phone, card" in error["message"]
    assert_no_values(r.text)
    assert echo.requests == []
    assert_no_values(gw.log())


def test_block_refuses_streams_before_anything_is_sent(start, echo):
    """block refuses a streaming request with a plain 400 too."""
    gw = start("{mode: block, kinds: [iban]}")
    with pytest.raises(openai.BadRequestError) as info:
        client(gw).chat.completions.create(
            model="chat", stream=True, messages=[{"role": "user", "content": f"pay {IBAN}"}])
    assert "(iban)" in str(info.value)
    assert echo.requests == []


def test_block_lets_clean_requests_through(start, echo):
    """block only refuses requests that contain personal data."""
    gw = start("{mode: block}")
    reply = client(gw).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "order 12345 on 2024-01-15"}])
    assert reply.choices[0].message.content == "order 12345 on 2024-01-15"


def test_log_counts_and_changes_nothing(start, echo):
    """log: the request goes upstream unchanged; one pii_detected event with counts, no values."""
    gw = start("{mode: log}")
    client(gw).chat.completions.create(model="chat", messages=[{"role": "user", "content": PROMPT}])
    assert echo.requests[-1].body["messages"][0]["content"] == PROMPT
    events = [json.loads(line) for line in gw.log().splitlines() if '"pii_detected"' in line]
    assert len(events) == 1
    assert events[0]["counts"] == {"email": 2, "phone": 1, "card": 1, "iban": 1, "ip": 1}
    assert events[0]["action"] == "log" and events[0]["route"] == "chat"
    assert_no_values(gw.log())


def test_config_errors_have_line_numbers(tmp_path):
    """gateway validate rejects a bad pii-redact config with FILE:LINE:COL errors."""
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "version: 1\n"
        "providers:\n"
        "  demo: {type: mock}\n"
        "routes:\n"
        "  chat: {target: {provider: demo, model: m}}\n"
        "plugins:\n"
        "  - name: pii-redact\n"
        "    config:\n"
        "      mode: hide\n"
        "      kinds: [email, ssn]\n")
    result = run_cli("validate", path)
    assert result.code == 1
    out = result.text
    assert f"{path}:9:" in out and "'hide' is not one of: mask, block, log" in out
    assert f"{path}:10:" in out and "ssn" in out


def test_restore_with_block_is_rejected_at_setup(tmp_path):
    """restore: true with mode: block fails the plugin's set-up, so validate rejects it."""
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "version: 1\n"
        "providers: {demo: {type: mock}}\n"
        "routes: {chat: {target: {provider: demo, model: m}}}\n"
        "plugins:\n"
        "  - name: pii-redact\n"
        "    config: {mode: block, restore: true}\n")
    result = run_cli("validate", path)
    assert result.code == 1
    assert "restore: true works only with mode: mask" in result.text


def test_a_huge_prompt_is_masked_without_holding_other_requests(start, echo):
    """A 1 MB prompt of digits takes over a second to search; it is searched in a worker
    thread, so a small request sent meanwhile is answered at once (it waited for the whole
    search before), and the big one is masked as usual. (Just under 1 MiB: aiohttp warns about
    larger bodies, and the suite turns warnings into errors.)"""
    import threading
    import time

    gw = start("{mode: mask}")
    big = "1 " * 500_000 + f"write to {EMAIL}"
    done: dict[str, object] = {}

    def send_big() -> None:
        done["reply"] = client(gw).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": big}])
        done["at"] = time.monotonic()

    sender = threading.Thread(target=send_big)
    sender.start()
    time.sleep(0.3)  # the big one is being searched
    asked = time.monotonic()
    small = client(gw).chat.completions.create(model="chat", messages=[
        {"role": "user", "content": "hello"}])
    answered = time.monotonic()
    sender.join(120)
    assert small.choices[0].message.content and "at" in done
    assert answered < done["at"], "the small request waited for the big one's search"
    assert answered - asked < 0.5
    assert EMAIL not in sent_upstream(echo) and "[EMAIL_1]" in sent_upstream(echo)
