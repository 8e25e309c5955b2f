"""Placeholders, the prompt texts of each endpoint, and the plugin's middleware in process."""

from __future__ import annotations

import orjson
import pytest
from structlog.testing import capture_logs

from gateway.errors import GatewayError
from gateway.graph.context import RequestContext
from gateway.providers.base import UpstreamResponse
from gateway_pii_redact import (CONFIG_SCHEMA, PiiState, Redactor, Restorer, Settings,
                                request_middleware, response_middleware)
from gateway_pii_redact.mask import Vault, _collected, could_continue, map_prompts, prompt_texts

ALL = ("email", "phone", "card", "iban", "ip")
EMAIL, PHONE, CARD = "jane@example.com", "+49 30 1234567", "4111 1111 1111 1111"


def ctx_for(body: dict, endpoint: str = "chat") -> RequestContext:
    return RequestContext(endpoint=endpoint, body=body, route="r", request_id="req-1")


def chat(*contents) -> dict:
    return {"model": "r", "messages": [{"role": "user", "content": c} for c in contents]}


class Plugin:
    name = "pii-redact"


# -- the vault -------------------------------------------------------------------------------

def test_same_value_same_placeholder():
    """A value seen twice gets one placeholder; different values get numbered ones."""
    vault = Vault(ALL)
    assert vault.mask(f"{EMAIL} and {EMAIL}") == "[EMAIL_1] and [EMAIL_1]"
    assert vault.mask("bob@example.org, JANE@example.com") == "[EMAIL_2], [EMAIL_1]"
    assert vault.counts["email"] == 4


def test_same_card_written_differently_same_placeholder():
    """Card numbers are compared by their digits."""
    vault = Vault(ALL)
    assert vault.mask("4111111111111111 / 4111-1111-1111-1111") == "[CARD_1] / [CARD_1]"


def test_restore_puts_the_first_spelling_back():
    """Restoring replaces known placeholders and leaves unknown ones alone."""
    vault = Vault(ALL)
    masked = vault.mask(f"mail {EMAIL}, call {PHONE}, card {CARD}")
    assert masked == "mail [EMAIL_1], call [PHONE_1], card [CARD_1]"
    restored = vault.restore(masked + " [EMAIL_9]")
    assert restored == f"mail {EMAIL}, call {PHONE}, card {CARD} [EMAIL_9]"


def test_placeholders_the_client_wrote_are_never_handed_out():
    """A literal "[EMAIL_1]" in the prompt is skipped, so restoring cannot rewrite it."""
    texts = ["my template says [EMAIL_1]", f"write to {EMAIL}"]
    vault = Vault(ALL, texts)
    assert vault.mask(texts[1]) == "write to [EMAIL_2]"
    assert vault.restore("[EMAIL_1] [EMAIL_2]") == f"[EMAIL_1] {EMAIL}"


def test_only_configured_kinds_are_masked():
    """With kinds: [email], phone numbers stay."""
    vault = Vault(("email",))
    assert vault.mask(f"{EMAIL} {PHONE}") == f"[EMAIL_1] {PHONE}"


def test_vault_repr_shows_no_value():
    """The vault's repr counts values and shows none."""
    vault = Vault(ALL)
    vault.mask(EMAIL)
    assert "jane" not in repr(vault) and "1 values" in repr(vault)


@pytest.mark.parametrize("piece,expected", [
    ("[", True), ("[E", True), ("[EMAIL", True), ("[EMAIL_", True), ("[EMAIL_12", True),
    ("[I", True), ("[IP_3", True), ("[IBAN_", True), ("[EMAIL_1]", False), ("[EMAIL_0", False),
    ("[X", False), ("[EMAILX", False), ("[email_1", False), ("[EMAIL_1234567", False),
])
def test_could_continue(piece, expected):
    """Only beginnings of placeholders are held back in a stream."""
    assert could_continue(piece) is expected


def test_restore_prefix_holds_back_a_partial_placeholder():
    """A trailing partial placeholder is held; complete ones are restored at once."""
    vault = Vault(ALL)
    vault.mask(f"{EMAIL} {PHONE}")
    assert vault.restore_prefix("to [EMAIL_1] or [PHO") == (f"to {EMAIL} or ", "[PHO")
    assert vault.restore_prefix("a [ b") == ("a [ b", "")
    assert vault.restore_prefix("list[0") == ("list[0", "")


# -- prompt texts ----------------------------------------------------------------------------

def test_chat_strings_and_text_parts_are_prompts():
    """Chat message strings and text parts are prompts; images are not."""
    body = {"messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [
            {"type": "text", "text": "part"},
            {"type": "image_url", "image_url": {"url": "http://x/a.png"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": []},
    ]}
    assert prompt_texts("chat", body) == ["sys", "part"] == _collected("chat", body)


@pytest.mark.parametrize("endpoint,field,value,expected", [
    ("completions", "prompt", "one", ["one"]),
    ("completions", "prompt", ["one", "two"], ["one", "two"]),
    ("completions", "prompt", [1, 2, 3], []),
    ("embeddings", "input", "one", ["one"]),
    ("embeddings", "input", ["one", [1, 2]], ["one"]),
])
def test_legacy_prompt_and_embeddings_input(endpoint, field, value, expected):
    """The legacy prompt and embeddings input are prompts (token arrays are skipped)."""
    assert prompt_texts(endpoint, {field: value}) == expected == _collected(endpoint, {field: value})


@pytest.mark.parametrize("endpoint,body", [
    ("chat", {"messages": "not a list"}),
    ("chat", {"messages": ["text", None, {"content": 5}, {"content": [
        "x", {"type": "text", "text": 3}, {"type": "text", "text": "a"}, {"text": "no type"}]},
        {"content": "b"}, {"content": [{"type": "text", "text": "c"}]}]}),
    ("chat", {}),
    ("completions", {"prompt": ["a", ["nested"], 1, "b"]}),
    ("embeddings", {"input": None}),
    ("images", {"prompt": "not a prompt the plugin reads"}),
])
def test_prompt_texts_are_what_map_prompts_reads(endpoint, body):
    """prompt_texts (read on every request) lists exactly the texts map_prompts maps."""
    assert prompt_texts(endpoint, body) == _collected(endpoint, body)

def test_map_prompts_never_mutates_the_client_body():
    """Masking builds new containers; the client's body stays as it was."""
    body = chat("keep", f"mail {EMAIL}")
    before = orjson.dumps(body)
    new = map_prompts("chat", body, Vault(ALL).mask)
    assert orjson.dumps(body) == before
    assert new["messages"][0] is body["messages"][0]  # unchanged messages are shared
    assert new["messages"][1]["content"] == "mail [EMAIL_1]"


# -- the middleware --------------------------------------------------------------------------

def middleware(**config):
    return Redactor(Settings(config, "pii-redact"))


async def test_mask_rewrites_the_request_and_counts():
    """mask replaces values in ctx.body and keeps counts per kind in the request's PiiState."""
    ctx = ctx_for(chat(f"{EMAIL} {PHONE}", f"card {CARD}, again {EMAIL}"))
    assert await middleware(mode="mask").on_request(ctx) is None
    contents = [m["content"] for m in ctx.body["messages"]]
    assert contents == ["[EMAIL_1] [PHONE_1]", "card [CARD_1], again [EMAIL_1]"]
    assert ctx.state_for(PiiState).counts == {"email": 2, "phone": 1, "card": 1}
    assert ctx.state_for(PiiState).vault is None  # no restore: nothing kept


async def test_mask_with_restore_keeps_the_vault():
    """With restore: true the request's vault stays in its PiiState for the answer."""
    ctx = ctx_for(chat(EMAIL))
    await middleware(mode="mask", restore=True).on_request(ctx)
    assert isinstance(ctx.state_for(PiiState).vault, Vault)


async def test_nothing_found_changes_nothing():
    """A request without personal data passes untouched and keeps no state."""
    body = chat("hello there, order 12345")
    ctx = ctx_for(body)
    await middleware(mode="mask", restore=True).on_request(ctx)
    assert ctx.body is body and ctx.state_for(PiiState) is None


async def test_block_names_the_kinds_in_canonical_order():
    """block refuses with 400 pii_detected, naming the kinds found (never the values)."""
    ctx = ctx_for(chat(f"card {CARD}, tel {PHONE}, mail {EMAIL}"))
    with pytest.raises(GatewayError) as info:
        await middleware(mode="block").on_request(ctx)
    err = info.value
    assert (err.status, err.code, err.param) == (400, "pii_detected", "messages")
    assert "(email, phone, card)" in err.message
    assert "jane" not in err.message and "4111" not in err.message


async def test_block_ignores_kinds_not_configured():
    """block with kinds: [card] lets e-mail addresses through."""
    ctx = ctx_for(chat(f"mail {EMAIL}"))
    assert await middleware(mode="block", kinds=["card"]).on_request(ctx) is None


async def test_log_counts_without_changing_the_request():
    """log leaves the body alone and logs counts, not values."""
    body = chat(f"{EMAIL} {EMAIL} 10.0.0.1")
    ctx = ctx_for(body)
    with capture_logs() as logs:
        await middleware(mode="log").on_request(ctx)
    assert ctx.body is body
    assert ctx.state_for(PiiState).counts == {"email": 2, "ip": 1}
    (event,) = [e for e in logs if e["event"] == "pii_detected"]
    assert event["counts"] == {"email": 2, "ip": 1} and event["action"] == "log"
    assert EMAIL not in repr(logs) and "10.0.0.1" not in repr(logs)


async def test_embeddings_input_is_masked():
    """Embeddings input strings are masked too."""
    ctx = ctx_for({"model": "e", "input": [f"mail {EMAIL}", "plain"]}, "embeddings")
    await middleware(mode="mask").on_request(ctx)
    assert ctx.body["input"] == ["mail [EMAIL_1]", "plain"]


async def test_restorer_restores_whole_answers():
    """The answer's message content (and legacy text) gets the originals back."""
    ctx = ctx_for(chat(EMAIL))
    await middleware(mode="mask", restore=True).on_request(ctx)
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi [EMAIL_1]"}},
                        {"index": 1, "text": "[EMAIL_1]!"}]}
    response = await Restorer().on_response(ctx, UpstreamResponse(200, body=orjson.dumps(body)))
    choices = orjson.loads(response.body)["choices"]
    assert choices[0]["message"]["content"] == f"hi {EMAIL}"
    assert choices[1]["text"] == f"{EMAIL}!"


async def test_restorer_leaves_odd_bodies_alone():
    """Bodies that are not JSON, or have no choices, pass as they are."""
    ctx = ctx_for(chat(EMAIL))
    await middleware(mode="mask", restore=True).on_request(ctx)
    for raw in (b"not json", b"[1, 2]", b'{"data": []}', b'{"choices": "x"}'):
        response = await Restorer().on_response(ctx, UpstreamResponse(200, body=raw))
        assert response.body == raw


# -- hooks and config ------------------------------------------------------------------------

def test_restore_without_mask_is_a_setup_error():
    """restore: true with block or log is refused when the plugin is set up."""
    with pytest.raises(ValueError, match="restore: true works only with mode: mask"):
        request_middleware(config={"mode": "block", "restore": True}, context=Plugin())


def test_response_middleware_only_when_restoring():
    """Only mask with restore needs the answer side."""
    assert response_middleware(config={"mode": "mask"}, context=Plugin()) is None
    assert isinstance(response_middleware(config={"mode": "mask", "restore": True},
                                          context=Plugin()), Restorer)


@pytest.mark.parametrize("config,ok", [
    ({"mode": "mask"}, True),
    ({"mode": "log", "kinds": ["email", "ip"]}, True),
    ({}, False),
    ({"mode": "hide"}, False),
    ({"mode": "mask", "kinds": ["ssn"]}, False),
    ({"mode": "mask", "kinds": []}, False),
    ({"mode": "mask", "restore": "yes"}, False),
    ({"mode": "mask", "extra": 1}, False),
])
def test_config_schema(config, ok):
    """The config schema requires mode and knows kinds and restore, nothing else."""
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(CONFIG_SCHEMA)
    assert Draft202012Validator(CONFIG_SCHEMA).is_valid(config) is ok
