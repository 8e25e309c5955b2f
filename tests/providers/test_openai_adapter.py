"""The OpenAI adapter against a fake OpenAI server on loopback: URLs, auth, error
classification, Retry-After."""

from __future__ import annotations

from types import MappingProxyType

import orjson
import pytest

from gateway.errors import UpstreamError
from gateway.providers.base import ClientPool, ProviderSpec, Timeouts, UpstreamRequest
from gateway.providers.http import retry_after
from gateway.providers.openai import OpenAIProvider

from ..background_app import free_port
from ..fake_upstream import Behaviour

TIMEOUTS = Timeouts(connect=1, first_byte=2, idle=2, total=2)


@pytest.fixture
async def make():
    """An OpenAIProvider for a base_url (its client sessions closed afterwards)."""
    pool = ClientPool()

    def build(base_url: str, **options) -> OpenAIProvider:
        spec = ProviderSpec("up", "openai-compatible", base_url, "sk-test",
                            MappingProxyType({"X-Extra": "1"}), 10, MappingProxyType(options))
        return OpenAIProvider(spec, pool)

    yield build
    await pool.close()


@pytest.fixture
def provider(make, upstream):
    return make(upstream.base_url + "/")


def request(stream: bool = False) -> UpstreamRequest:
    return UpstreamRequest("chat", {"model": "m", "messages": []}, stream, TIMEOUTS)


async def test_posts_body_with_auth_and_extra_headers(provider, upstream):
    """The body goes to base_url + path with the bearer key and configured headers."""
    upstream.script("m", Behaviour(body='{"ok": true}'))
    response = await provider.send(request())
    (call,) = upstream.requests
    assert response.status == 200 and response.body == b'{"ok": true}'
    assert call.path == "/v1/chat/completions"
    assert call.headers["Authorization"] == "Bearer sk-test"
    assert call.headers["X-Extra"] == "1"
    assert call.body == {"model": "m", "messages": []}


@pytest.mark.parametrize(
    "status, body, error_class",
    [
        (429, {"error": {"message": "slow down", "type": "requests"}}, "rate_limit"),
        (500, {"error": {"message": "boom"}}, "server"),
        (503, "Service Unavailable", "server"),
        (400, {"error": {"message": "too long", "code": "context_length_exceeded"}}, "context_window"),
        (400, {"error": {"message": "flagged", "code": "content_filter"}}, "content_policy"),
        (400, {"error": {"message": "bad field"}}, "client"),
        (401, {"error": {"message": "bad key"}}, "client"),
    ],
)
async def test_errors_are_classified(provider, upstream, status, body, error_class):
    """Each upstream error becomes an UpstreamError with the right class and the message kept."""
    payload = body if isinstance(body, str) else orjson.dumps(body).decode()
    upstream.script("m", Behaviour(status=status, body=payload))
    with pytest.raises(UpstreamError) as info:
        await provider.send(request())
    err = info.value
    assert (err.status, err.error_class, err.from_upstream) == (status, error_class, True)
    expected = body if isinstance(body, str) else body["error"]["message"]
    assert err.message == expected
    if isinstance(body, str):  # not OpenAI-shaped: normalised, the text kept as the message
        assert orjson.loads(err.body)["error"]["message"] == body
    else:
        assert err.body == payload.encode()


async def test_retry_after_ms_header(provider, upstream):
    """retry-after-ms is read into seconds."""
    upstream.script("m", Behaviour(status=429, body="{}", headers={"retry-after-ms": "250"}))
    with pytest.raises(UpstreamError) as info:
        await provider.send(request())
    assert info.value.retry_after == 0.25


async def test_connection_error_is_not_an_upstream_status(make):
    """A refused connection (nothing listens on the port) is class 'connection' with no
    upstream status."""
    provider = make(f"http://127.0.0.1:{free_port()}/v1/")
    with pytest.raises(UpstreamError) as info:
        await provider.send(request())
    assert info.value.error_class == "connection" and info.value.from_upstream is False


async def test_stream_returns_chunks(provider, upstream):
    """A stream answer is relayed as an async iterator of the upstream's bytes."""
    sse = b'data: {"choices": []}\n\ndata: [DONE]\n\n'
    upstream.script("m", Behaviour(body=sse.decode(), content_type="text/event-stream"))
    response = await provider.send(request(stream=True))
    received = b"".join([c async for c in response.stream])
    assert received == sse
    assert response.media_type.startswith("text/event-stream")


@pytest.mark.parametrize(
    "headers, expected",
    [({"Retry-After": "3"}, 3.0), ({"retry-after-ms": "1500"}, 1.5), ({}, None),
     ({"Retry-After": "soon"}, None)],
)
def test_retry_after_parsing(headers, expected):
    """Retry-After in seconds, retry-after-ms, absent or unparsable."""
    assert retry_after(headers) == expected


def test_retry_after_http_date():
    """Retry-After as an HTTP date gives the seconds until then."""
    from email.utils import formatdate
    import time

    value = retry_after({"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    assert value is not None and 25 <= value <= 31


FILE_PART = {"type": "file", "file": {"file_id": "file-operator-abc"}}
ACCOUNT_BODIES = [
    ({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "sum it up"}, FILE_PART]}]}, "messages[0].content[1]"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}],
      "tools": [{"type": "file_search", "vector_store_ids": ["vs_operator"]}]}, "tools[0]"),
]


@pytest.mark.parametrize("body, where", ACCOUNT_BODIES)
async def test_objects_of_the_account_only_when_the_provider_allows_them(make, upstream, body,
                                                                         where):
    """A file id or a vector store names something of the account the gateway's key opens,
    whoever put it there: refused (400, nothing sent) unless the provider says
    account_objects: true."""
    with pytest.raises(UpstreamError) as refused:
        await make(upstream.base_url + "/").send(UpstreamRequest("chat", body, False, TIMEOUTS))
    assert refused.value.status == 400 and where in refused.value.message
    assert "account_objects: true" in refused.value.message and upstream.requests == []
    upstream.script("m", Behaviour(body='{"ok": true}'))
    allowed = await make(upstream.base_url + "/", account_objects=True).send(
        UpstreamRequest("chat", body, False, TIMEOUTS))
    assert allowed.status == 200 and upstream.requests[-1].body == body


async def test_text_and_tool_schemas_that_mention_file_ids_pass(provider, upstream):
    """Only references count: a prompt quoting "file_id", or a function whose parameters have
    a file_id property, goes through."""
    upstream.script("m", Behaviour(body='{"ok": true}'))
    body = {"model": "m", "messages": [{"role": "user", "content": 'what is "file_id"?'}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {
                "type": "object", "properties": {"file_id": {"type": "string"}}}}}]}
    answer = await provider.send(UpstreamRequest("chat", body, False, TIMEOUTS))
    assert answer.status == 200 and upstream.requests[-1].body == body


def test_account_objects_on_another_type_is_a_config_error(tmp_path):
    from gateway.config.compiler import compile_bytes
    from gateway.errors import ConfigErrors

    text = ("version: 1\nproviders:\n  g: {type: gemini, api_key: x, account_objects: true}\n"
            "routes:\n  r: {target: {provider: g, model: m}}\n")
    with pytest.raises(ConfigErrors) as caught:
        compile_bytes(text.encode(), str(tmp_path / "gateway.yaml"), version=1)
    assert "gateway.yaml:3:" in str(caught.value) and "account_objects is for types" in str(
        caught.value)
