"""/v1/responses through the real app (in process), driven by the official openai SDK
(responses.create / retrieve / delete / input_items.list / stream): to the mock provider, to
a fake OpenAI-compatible chat upstream (translated), to a fake OpenAI with the Responses API
(passed through), to the validating fake Anthropic API (translated twice); conversations
continued with previous_response_id, per key; function calls; errors in OpenAI's shape."""

from __future__ import annotations

import hashlib
import json

import openai
import pytest

from ..fake_upstream import Behaviour
from ..inprocess_gateway import poll
from ..providers.fake_anthropic import API_KEY

ALICE, BOB, TIGHT = "sk-gw-alice", "sk-gw-bob", "sk-gw-tight"
CONFIG = """
version: 1
server: {{max_body: 64KB}}
defaults:
  retry: {{attempts: 1}}
providers:
  demo: {{type: mock}}
  claude: {{type: anthropic, base_url: "{anthropic}", api_key: {key}}}
  up: {{type: openai-compatible, base_url: "{openai}", api_key: upstream-secret}}
  oai: {{type: openai, base_url: "{openai}", api_key: upstream-secret, account_objects: true}}
  oai-closed: {{type: openai, base_url: "{openai}", api_key: upstream-secret}}
routes:
  native-closed: {{target: {{provider: oai-closed, model: gpt-native}}}}
  demo: {{target: {{provider: demo, model: echo}}}}
  claude: {{target: {{provider: claude, model: claude-test}}}}
  gpt: {{target: {{provider: up, model: gpt-test}}}}
  native: {{target: {{provider: oai, model: gpt-native}}}}
  native-rescued:
    stream_recovery: {{mode: continue}}
    target: {{provider: oai, model: gpt-cut}}
  native-or-claude:
    fallback:
      on_status: [500, 502, 503, 504]
      targets:
        - target: {{provider: oai, model: gpt-flaky}}
        - target: {{provider: claude, model: claude-test}}
keys:
  alice: {{key_sha256: {alice}, routes: ["*"]}}
  bob: {{key_sha256: {bob}, routes: ["*"]}}
  tight: {{key_sha256: {tight}, routes: [demo], limits: {{requests_per_minute: 1}}}}
"""
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


def sha(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@pytest.fixture
def gw(fake, upstream, gateway_app):
    return gateway_app(CONFIG.format(anthropic=fake.base_url, openai=upstream.base_url,
                                     key=API_KEY, alice=sha(ALICE), bob=sha(BOB),
                                     tight=sha(TIGHT)))


def chat_answer(message: dict, finish: str = "stop") -> Behaviour:
    return Behaviour(body=json.dumps({
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-test",
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}))


def test_create_retrieve_list_delete_with_the_mock(gw):
    """The SDK's four calls: a created response is stored, retrieved as it was answered, its
    input items listed (newest first, paged), and deleted (then 404)."""
    with gw.openai(ALICE) as c:
        created = c.responses.create(model="demo", instructions="Be brief.",
                                     input=[{"role": "user", "content": "first"},
                                            {"role": "user", "content": "second"}],
                                     metadata={"ticket": "42"})
        assert created.id.startswith("resp_") and created.status == "completed"
        assert created.output_text == "Mock reply from echo: Be brief. first second"
        assert created.model == "demo" and created.metadata == {"ticket": "42"}
        assert (created.usage.input_tokens, created.usage.output_tokens) == (4, 8)
        again = c.responses.retrieve(created.id)
        assert again.model_dump() == created.model_dump()
        items = c.responses.input_items.list(created.id)
        assert [i.content[0].text for i in items.data] == ["second", "first"]
        page = c.responses.input_items.list(created.id, order="asc", limit=1)
        assert [i.content[0].text for i in page.data] == ["first"] and page.has_more
        after = c.responses.input_items.list(created.id, order="asc", after=page.data[0].id)
        assert [i.content[0].text for i in after.data] == ["second"]
        c.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            c.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            c.responses.delete(created.id)


def test_translated_request_and_answer(gw, upstream):
    """To a chat-only target the request becomes a chat body (instructions a system message,
    max_output_tokens, temperature, text.format, function tools) and the chat answer a
    response object with Responses' usage."""
    with gw.openai(ALICE) as c:
        answer = c.responses.with_raw_response.create(
            model="gpt", instructions="Be brief.", input="Paris?", max_output_tokens=50,
            temperature=0.2, tools=[WEATHER], tool_choice="auto",
            text={"format": {"type": "json_schema", "name": "city",
                             "schema": {"type": "object"}, "strict": True}})
    response = answer.parse()
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"] == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Paris?"}]
    assert (sent.body["max_tokens"], sent.body["temperature"]) == (50, 0.2)
    assert sent.body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather",
        "parameters": WEATHER["parameters"]}}]
    assert sent.body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "city", "schema": {"type": "object"}, "strict": True}}
    assert response.output_text == "fake answer from gpt-test"
    assert (response.usage.input_tokens, response.usage.output_tokens,
            response.usage.total_tokens) == (3, 4, 7)
    assert answer.headers["x-gateway-target"] == "up/gpt-test"
    assert answer.headers["x-gateway-route"] == "gpt"


def test_previous_response_id_sends_the_whole_history(gw, upstream):
    """A continuation sends every earlier input and output (not the earlier instructions),
    across three turns, whole and streamed."""
    with gw.openai(ALICE) as c:
        one = c.responses.create(model="gpt", instructions="Old rules.", input="turn one")
        two = c.responses.create(model="gpt", input="turn two", previous_response_id=one.id)
        with c.responses.stream(model="gpt", input="turn three",
                                previous_response_id=two.id) as stream:
            text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            three = stream.get_final_response()
    assert upstream.requests[-1].body["messages"] == [
        {"role": "user", "content": "turn one"},
        {"role": "assistant", "content": "fake answer from gpt-test"},
        {"role": "user", "content": "turn two"},
        {"role": "assistant", "content": "fake answer from gpt-test"},
        {"role": "user", "content": "turn three"}]
    assert text == three.output_text == "fake answer from gpt-test"
    assert two.previous_response_id == one.id and three.previous_response_id == two.id
    with gw.openai(ALICE) as c:  # the streamed answer was stored too
        assert c.responses.retrieve(three.id).output_text == text


def test_function_calling_round_trip(gw, upstream):
    """A chat tool call comes back as a function_call item; its function_call_output,
    continuing the response, reaches the target as the assistant's call and a tool message."""
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
    upstream.script("gpt-test", chat_answer({"role": "assistant", "content": None,
                                             "tool_calls": [call]}, "tool_calls"))
    with gw.openai(ALICE) as c:
        first = c.responses.create(model="gpt", input="Weather in Paris?", tools=[WEATHER],
                                   tool_choice="required")
        (item,) = first.output
        assert (item.type, item.call_id, item.name, item.arguments) == (
            "function_call", "call_1", "get_weather", "{\"city\": \"Paris\"}")
        final = c.responses.create(model="gpt", previous_response_id=first.id, tools=[WEATHER],
                                   input=[{"type": "function_call_output", "call_id": "call_1",
                                           "output": "18C and sunny"}])
    assert upstream.requests[0].body["tool_choice"] == "required"
    assert upstream.requests[-1].body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"}]
    assert final.output_text == "fake answer from gpt-test"


def test_a_key_cannot_read_or_continue_another_keys_response(gw):
    """Bob gets 404 for Alice's response: retrieve, input items, delete and continue alike;
    Alice still has it afterwards."""
    with gw.openai(ALICE) as alice:
        mine = alice.responses.create(model="demo", input="secret plans")
    with gw.openai(BOB) as bob:
        for call in (lambda: bob.responses.retrieve(mine.id),
                     lambda: bob.responses.input_items.list(mine.id),
                     lambda: bob.responses.delete(mine.id),
                     lambda: bob.responses.create(model="demo", input="and?",
                                                  previous_response_id=mine.id)):
            with pytest.raises(openai.NotFoundError):
                call()
    with gw.openai(ALICE) as alice:
        assert alice.responses.retrieve(mine.id).output_text.endswith("secret plans")


def test_store_false_is_not_stored(gw):
    """store: false answers as usual, but the response cannot be retrieved or continued."""
    with gw.openai(ALICE) as c:
        response = c.responses.create(model="demo", input="forget me", store=False)
        assert response.store is False and response.output_text
        with pytest.raises(openai.NotFoundError):
            c.responses.retrieve(response.id)
        with pytest.raises(openai.NotFoundError) as raised:
            c.responses.create(model="demo", input="x", previous_response_id=response.id)
    assert raised.value.body["message"] == f"Previous response with id '{response.id}' not found."


def test_openai_target_gets_the_responses_request(gw, upstream):
    """An openai target gets the Responses request itself at /v1/responses: the history of a
    conversation begun on another target inlined (no previous_response_id, store: false),
    and its answer relayed, whole and streamed (event for event), and stored."""
    with gw.openai(ALICE) as c:
        first = c.responses.create(model="demo", input="hello")
        whole = c.responses.create(model="native", input="and you?",
                                   previous_response_id=first.id, instructions="Be kind.")
        sent = upstream.requests[-1]
        with c.responses.stream(model="native", input="more",
                                previous_response_id=whole.id) as stream:
            kinds = [e.type for e in stream]
            streamed = stream.get_final_response()
        assert c.responses.retrieve(streamed.id).output_text == "fake answer from gpt-native"
    assert sent.path == "/v1/responses"
    assert sent.body["model"] == "gpt-native" and sent.body["store"] is False
    assert "previous_response_id" not in sent.body and sent.body["instructions"] == "Be kind."
    assert sent.body["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "and you?"}]
    assert sent.headers["Authorization"] == "Bearer upstream-secret"
    # the gateway's own id (the fake's is always resp_fake_openai: trust review)
    assert whole.id.startswith("resp_") and whole.id != "resp_fake_openai"
    assert whole.previous_response_id == first.id
    assert whole.store is True and whole.output_text == "fake answer from gpt-native"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert streamed.previous_response_id == whole.id
    assert len(upstream.requests[-1].body["input"]) == 5


def test_file_ids_reach_openai_targets_only(gw, upstream):
    """An input_image by file_id goes as it is to a route whose targets are all openai (and
    allow objects of their account); a route that would translate it answers 400 saying what
    to send instead, and so does an openai provider without account_objects."""
    content = [{"type": "input_text", "text": "what is this?"},
               {"type": "input_image", "file_id": "file_123"}]
    with gw.openai(ALICE) as c:
        assert c.responses.create(model="native", input=[{"role": "user", "content": content}])
        assert upstream.requests[-1].body["input"][0]["content"][1]["file_id"] == "file_123"
        with pytest.raises(openai.BadRequestError) as raised:
            c.responses.create(model="gpt", input=[{"role": "user", "content": content}])
    assert "image_url" in raised.value.body["message"]
    assert upstream.requests[-1].path == "/v1/responses"
    sent = len(upstream.requests)
    with gw.openai(ALICE) as c, pytest.raises(openai.BadRequestError) as closed:
        c.responses.create(model="native-closed", input=[{"role": "user", "content": content}])
    assert "account_objects: true" in closed.value.body["message"]
    assert len(upstream.requests) == sent  # a provider that does not allow it gets nothing


def test_fallback_from_openai_to_anthropic(gw, upstream, fake):
    """A native OpenAI target that fails (503) falls back to Anthropic within the request,
    streamed too: the client gets one well-formed Responses answer either way."""
    upstream.script("gpt-flaky", 503, 503)
    with gw.openai(ALICE) as c:
        whole = c.responses.with_raw_response.create(model="native-or-claude", input="Hi")
        with c.responses.stream(model="native-or-claude", input="Hi") as stream:
            streamed = stream.get_final_response()
    assert whole.headers["x-gateway-target"] == "claude/claude-test"
    assert whole.headers["x-gateway-attempts"] == "2"
    assert whole.parse().output_text and streamed.output_text == whole.parse().output_text
    assert [r.path for r in upstream.requests] == ["/v1/responses"] * 2


def test_a_native_stream_cut_short_ends_with_an_error_event(gw, upstream):
    """An OpenAI Responses stream that breaks before response.completed ends with an error
    event (never passed off as a whole answer, never continued in chat's shape, even on a
    route with stream_recovery); OpenAI's own refusal keeps its words."""
    upstream.script("gpt-cut", Behaviour(fail_after_chunks=5))
    with gw.openai(ALICE) as c:
        with pytest.raises(openai.APIError) as raised:
            with c.responses.stream(model="native-rescued", input="Hi") as stream:
                for _ in stream:
                    pass
        assert "stream interrupted" in str(raised.value)
        assert len(upstream.requests) == 1
        upstream.script("gpt-native", Behaviour(status=400))
        with pytest.raises(openai.BadRequestError) as refused:
            c.responses.create(model="native", input="Hi")
    assert refused.value.body["message"] == "fake upstream error 400"


def test_native_usage_is_recorded(gw):
    """Usage of native Responses answers, whole and streamed, is counted like any other."""
    with gw.openai(ALICE) as c:
        c.responses.create(model="native", input="hi")
        with c.responses.stream(model="native", input="hi") as stream:
            stream.until_done()
    rows = poll(lambda: gw.get("/admin/usage?period=all").json()["usage"],
                lambda rows: sum(r["requests"] for r in rows) == 2, what="usage not written")
    (row,) = rows
    assert (row["route"], row["key"], row["target"]) == ("native", "alice", "oai/gpt-native")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (10, 8)


def test_anthropic_target_translated(gw, fake):
    """To Anthropic the request crosses through chat: the SDK gets a response object."""
    with gw.openai(ALICE) as c:
        response = c.responses.create(model="claude", input="Hello", instructions="Be brief.",
                                      max_output_tokens=64)
        with c.responses.stream(model="claude", input="Hi",
                                previous_response_id=response.id) as stream:
            final = stream.get_final_response()
    first = fake.requests[0].body
    assert first["system"] == "Be brief." and first["max_tokens"] == 64
    assert first["messages"] == [{"role": "user", "content": "Hello"}]
    assert response.output_text and final.output_text
    assert [m["role"] for m in fake.requests[-1].body["messages"]] == [
        "user", "assistant", "user"]


def test_error_after_the_first_byte_ends_the_stream_with_an_error_event(gw, upstream):
    """A chat stream cut mid-way ends the Responses stream with an error event, which the
    SDK raises."""
    upstream.script("gpt-test", Behaviour(fail_after_chunks=2))
    with gw.openai(ALICE) as c, pytest.raises(openai.APIError) as raised:
        with c.responses.stream(model="gpt", input="Paris") as stream:
            for _ in stream:
                pass
    assert "stream interrupted" in str(raised.value)


@pytest.mark.parametrize("body, status, words", [
    ({"model": "gpt", "input": 42}, 400, "'input' must be a string"),
    ({"model": "gpt", "input": [{"type": "computer_call", "id": "x"}]}, 400,
     "'computer_call' items are not supported"),
    ({"model": "gpt", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, 400,
     "'input_audio' parts are not permitted"),
    ({"model": "gpt", "input": [{"role": "wizard", "content": "x"}]}, 400, "role"),
    ({"model": "gpt", "input": "x", "temperature": "hot"}, 400, "'temperature' must be a number"),
    ({"model": "gpt", "input": "x", "max_output_tokens": 0}, 400, "max_output_tokens"),
    ({"model": "gpt", "input": "x", "tools": [{"type": "function"}]}, 400, "tools[0].name"),
    ({"model": "gpt", "input": "x", "text": {"format": {"type": "yaml"}}}, 400, "text.format"),
    ({"model": "gpt", "input": ["x"] * 10_001}, 400, "at most 10000"),
    ({"model": "gpt", "input": "x", "background": True}, 400, "background"),
    ({"model": "nope", "input": "x"}, 404, "nope"),
    ({"input": "x"}, 400, "model"),
    ({"model": "gpt", "input": "x" * 70_000}, 413, "max_body"),
])
def test_hostile_input_is_a_clear_4xx(gw, upstream, body, status, words):
    """Bad types, unknown item and part types, too many items, a body over max_body: a 4xx
    in OpenAI's error shape naming the problem; nothing reaches the upstream."""
    answer = gw.post("/v1/responses", json=body, headers={"Authorization": f"Bearer {ALICE}"})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert words in error["message"] and error["type"] == "invalid_request_error" \
        or status != 400
    assert upstream.requests == []


def test_key_routes_and_limits_apply(gw):
    """A key's routes (403) and rate limits (429 with Retry-After) apply as for chat, with
    the same error codes: a client tells a rate limit from a budget by ``code``."""
    with gw.openai(TIGHT) as c:
        with pytest.raises(openai.PermissionDeniedError) as denied:
            c.responses.create(model="gpt", input="x")
        assert c.responses.create(model="demo", input="x").output_text
        with pytest.raises(openai.RateLimitError) as limited:
            c.responses.create(model="demo", input="x")
    assert limited.value.response.headers.get("retry-after")
    assert limited.value.code == "rate_limit_exceeded"
    assert denied.value.code == "route_not_allowed"


def test_inbound_without_the_route_function():
    """A plugin that prepares a Responses request itself (dispatch.prepare) gets the chat
    body; previous_response_id needs the door's own route, which knows the key."""
    from gateway.errors import GatewayError
    from gateway.frontdoors.responses import ResponsesDoor

    door = ResponsesDoor(store=None)  # type: ignore[arg-type]
    chat, native = door.inbound({"model": "demo", "input": "hi"}, {})
    assert chat == {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    assert native.body == {"model": "demo", "input": "hi", "store": False}
    with pytest.raises(GatewayError) as raised:
        door.inbound({"model": "demo", "input": "hi", "previous_response_id": "resp_1"}, {})
    assert raised.value.status == 400


def test_not_json_and_no_key(gw):
    """A body that is not JSON is a 400; a missing key a 401, both in OpenAI's shape."""
    bad = gw.post("/v1/responses", content=b"{nope", headers={
        "Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    for method, path in (("POST", "/v1/responses"), ("GET", "/v1/responses/resp_x"),
                         ("DELETE", "/v1/responses/resp_x"),
                         ("GET", "/v1/responses/resp_x/input_items")):
        answer = gw.request(method, path, json={"model": "demo", "input": "x"})
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "authentication_error"
