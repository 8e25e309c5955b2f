"""The azure-openai adapter against a fake Azure endpoint on a loopback port: deployment URLs,
api-version, api-key or Entra bearer auth; the compile-time api_version check; and the real
gateway in front of it, driven by the openai client."""

from __future__ import annotations

import json
from types import MappingProxyType

import orjson
import pytest
from aiohttp import web

from gateway.config.compiler import compile_bytes
from gateway.errors import ConfigErrors, UpstreamError
from gateway.providers.azure import AzureOpenAIProvider
from gateway.providers.base import ClientPool, ProviderSpec, Timeouts, UpstreamRequest

from ..background_app import BackgroundApp

TIMEOUTS = Timeouts(connect=2, first_byte=5, idle=5, total=5)
VERSION = "2024-10-21"
KEY = "azure-key"
TOKEN = "entra-token"


class FakeAzure(BackgroundApp):
    """Answers only at /openai/deployments/{deployment}/... with the right api-version and
    credentials, as Azure does (404 DeploymentNotFound, 401, 400 for a missing version)."""

    def __init__(self, deployments=("gpt4o-prod", "embed-prod")):
        super().__init__()
        self.deployments = set(deployments)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, dict, dict, dict]] = []  # path, query, headers, body
        self.next_status: list[tuple[int, dict, dict]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/openai/deployments/{deployment}/{endpoint:.*}", self._handle)
        app.router.add_get("/openai/models", self._models)

    async def _models(self, request: web.Request) -> web.Response:
        if request.query.get("api-version") != VERSION:
            return _error(400, "BadRequest", "Missing or unsupported api-version")
        if request.headers.get("api-key") != KEY:
            return _error(401, "401", "Access denied due to invalid subscription key")
        return web.json_response({"object": "list", "data": [{"id": "gpt-4o"}]})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, dict(request.query), dict(request.headers), body))
        if request.query.get("api-version") != VERSION:
            return _error(400, "BadRequest", "Missing or unsupported api-version")
        auth = request.headers.get("api-key") == KEY or \
            request.headers.get("Authorization") == f"Bearer {TOKEN}"
        if not auth:
            return _error(401, "401", "Access denied due to invalid subscription key")
        deployment = request.match_info["deployment"]
        if deployment not in self.deployments:
            return _error(404, "DeploymentNotFound", f"The API deployment {deployment} does not exist")
        if self.next_status:
            status, error, headers = self.next_status.pop(0)
            return web.json_response({"error": error}, status=status, headers=headers)
        endpoint = request.match_info["endpoint"]
        if endpoint == "embeddings":
            return web.json_response({"object": "list", "model": "text-embedding-3-small",
                                      "data": [{"object": "embedding", "index": 0,
                                                "embedding": [0.5, 0.5]}],
                                      "usage": {"prompt_tokens": 1, "total_tokens": 1}})
        text = f"azure answer from {deployment}"
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b'data: {"id":"","object":"","created":0,"model":"","choices":[],'
                             b'"prompt_filter_results":[]}\n\n')
            for word in text.split(" "):
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1,
                         "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": word + " "},
                                                         "finish_reason": None}]}
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        return web.json_response({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}})


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@pytest.fixture
def azure():
    server = FakeAzure().start()
    yield server
    server.stop()


@pytest.fixture
async def make(azure):
    pool = ClientPool()

    def build(base_url: str | None = None, key: str | None = KEY, **options) -> AzureOpenAIProvider:
        options = {"api_version": VERSION, **options}
        spec = ProviderSpec("az", "azure-openai", base_url or azure.base_url, key,
                            MappingProxyType({}), 10, MappingProxyType(options))
        return AzureOpenAIProvider(spec, pool)

    yield build
    await pool.close()


def chat(model: str = "gpt4o-prod", stream: bool = False) -> UpstreamRequest:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return UpstreamRequest("chat", {**body, "stream": True} if stream else body, stream, TIMEOUTS)


async def test_deployment_url_api_version_and_key(azure, make):
    """Chat goes to /openai/deployments/{model}/chat/completions?api-version=… with api-key."""
    response = await make().send(chat())
    assert orjson.loads(response.body)["choices"][0]["message"]["content"] == \
        "azure answer from gpt4o-prod"
    path, query, headers, body = azure.requests[-1]
    assert path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert query == {"api-version": VERSION}
    assert headers["api-key"] == KEY and "Authorization" not in headers
    assert body == {"model": "gpt4o-prod", "messages": [{"role": "user", "content": "hi"}]}


async def test_deployment_option_and_base_url_with_openai_suffix(azure, make):
    """The deployment option overrides the model; a base_url ending in /openai still works."""
    provider = make(base_url=azure.base_url + "/openai/", deployment="gpt4o-prod")
    await provider.send(chat(model="gpt-4o"))
    assert azure.requests[-1][0] == "/openai/deployments/gpt4o-prod/chat/completions"


async def test_entra_token_is_a_bearer_header(azure, make):
    """azure_ad_token is sent as Authorization: Bearer, and api-key is then not sent."""
    await make(azure_ad_token=TOKEN).send(chat())
    headers = azure.requests[-1][2]
    assert headers["Authorization"] == f"Bearer {TOKEN}" and "api-key" not in headers
    await make(key=None, azure_ad_token=TOKEN).send(chat())


async def test_embeddings_and_streaming(azure, make):
    """Embeddings use the embeddings path; streams pass through to [DONE]."""
    provider = make()
    await provider.send(UpstreamRequest("embeddings", {"model": "embed-prod", "input": "x"},
                                        False, TIMEOUTS))
    assert azure.requests[-1][0] == "/openai/deployments/embed-prod/embeddings"
    response = await provider.send(chat(stream=True))
    raw = b"".join([part async for part in response.stream])
    assert raw.endswith(b"data: [DONE]\n\n") and b"azure " in raw


@pytest.mark.parametrize("status, error, error_class", [
    (400, {"code": "content_filter", "message": "The response was filtered",
           "innererror": {"code": "ResponsibleAIPolicyViolation"}}, "content_policy"),
    (400, {"code": "context_length_exceeded", "message": "This model's maximum context length "
           "is 128000 tokens"}, "context_window"),
    (429, {"code": "429", "message": "Requests to the ChatCompletions_Create Operation have "
           "exceeded call rate limit"}, "rate_limit"),
])
async def test_azure_errors_are_classified(azure, make, status, error, error_class):
    """Azure's content filter, context length and rate limit errors get their classes."""
    azure.next_status.append((status, error, {"retry-after": "3"}))
    with pytest.raises(UpstreamError) as info:
        await make().send(chat())
    assert (info.value.status, info.value.error_class) == (status, error_class)
    assert info.value.message == error["message"] and info.value.retry_after == 3.0


async def test_unknown_deployment_and_wrong_key(azure, make):
    """A wrong deployment is Azure's 404 and a wrong key its 401, messages kept."""
    with pytest.raises(UpstreamError) as info:
        await make().send(chat(model="nope"))
    assert info.value.status == 404 and "nope does not exist" in info.value.message
    with pytest.raises(UpstreamError) as info:
        await make(key="bad").send(chat())
    assert (info.value.status, info.value.error_class) == (401, "client")


async def test_health_check_lists_models(azure, make):
    """The health check asks GET /openai/models?api-version=… with the credentials."""
    assert await make().check_health(2) is None
    assert await make(key="bad").check_health(2) == "GET /openai/models answered 401"


def test_api_version_is_required_at_compile_time():
    """An azure-openai provider without api_version is a config error at the provider."""
    text = ("version: 1\nproviders:\n  az:\n    type: azure-openai\n"
            "    base_url: https://r.openai.azure.com\n    api_key: k\n"
            "routes:\n  a: {target: {provider: az, model: m}}\n")
    with pytest.raises(ConfigErrors) as info:
        compile_bytes(text.encode(), "g.yaml", env={})
    (err,) = info.value.errors
    assert (err.line, err.path) == (4, "$.providers.az")
    assert "api_version" in err.message


def test_gateway_in_front_of_azure(azure, gateway_app):
    """The gateway routes an openai client's calls to the Azure deployment."""
    gw = gateway_app(f"""
version: 1
defaults: {{retry: {{attempts: 1}}}}
providers:
  az: {{type: azure-openai, base_url: "{azure.base_url}", azure_ad_token: {TOKEN},
        api_version: "{VERSION}"}}
routes:
  gpt: {{target: {{provider: az, model: gpt4o-prod}}}}
""")
    with gw.openai() as client:
        reply = client.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "hi"}])
        stream = client.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert reply.choices[0].message.content == "azure answer from gpt4o-prod"
    assert text == "azure answer from gpt4o-prod "


async def test_objects_of_the_account_only_when_the_provider_allows_them(azure, make):
    """As for OpenAI: a file id names a file of the Azure resource the gateway's key opens."""
    body = {"model": "gpt4o-prod", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_id": "assistant-operator-1"}}]}]}
    with pytest.raises(UpstreamError) as refused:
        await make().send(UpstreamRequest("chat", body, False, TIMEOUTS))
    assert refused.value.status == 400 and azure.requests == []
    answer = await make(account_objects=True).send(UpstreamRequest("chat", body, False, TIMEOUTS))
    assert answer.status == 200 and len(azure.requests) == 1
