"""The calls the gateway makes to a provider's own API (provider-native batches, fine-tuning:
gateway/files/provider_api.py) carry the provider's key: they never follow a redirect, and a
path made of an id taken from the provider's answer (batch id, output file id, job id) never
reaches another resource than the one it names (``../``, a query, a URL in the id)."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from gateway.config.compiler import Runtime, compile_bytes
from gateway.errors import GatewayError
from gateway.files.native_batches import NativeBatches, native_target
from gateway.files.provider_api import call, stream
from gateway.files.store import FileStore, Owner

from ..background_app import BackgroundApp
from ..fake_batches import KEY, FakeBatchAPI


class Elsewhere(BackgroundApp):
    """Another host: records every request it gets (it must get none)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, str | None]] = []

    def routes(self, app: web.Application) -> None:
        async def anything(request: web.Request) -> web.Response:
            self.seen.append((request.method, request.path, request.headers.get("Authorization")))
            return web.json_response({"id": "stolen", "object": "file"})

        app.router.add_route("*", "/{tail:.*}", anything)


class Hostile(FakeBatchAPI):
    """OpenAI's Batch API that redirects where told, and names ids it is told to; every path
    asked for is recorded."""

    def __init__(self, elsewhere: str) -> None:
        super().__init__()
        self.elsewhere = elsewhere
        self.redirect: set[str] = set()  # paths answered with a 307 to ``elsewhere``
        self.output_id: str | None = None
        self.paths: list[str] = []

    def routes(self, app: web.Application) -> None:
        @web.middleware
        async def hostile(request: web.Request, handler):
            self.paths.append(request.raw_path)
            if request.path in self.redirect:
                raise web.HTTPTemporaryRedirect(self.elsewhere + request.path)
            answer = await handler(request)
            if self.output_id is not None and request.path.startswith("/v1/batches/"):
                batch = json.loads(answer.body)
                batch.update(status="completed", output_file_id=self.output_id)
                return web.json_response(batch)
            return answer

        app.middlewares.append(hostile)
        super().routes(app)
        app.router.add_route("*", "/{tail:.*}", self._anything)

    async def _anything(self, request: web.Request) -> web.Response:
        return web.json_response({"id": "x", "object": "thing", "status": "completed"})


CONFIG = """
version: 1
providers:
  oa: {{type: openai, base_url: "{base_url}", api_key: {key}, batch: native}}
routes:
  gpt: {{target: {{provider: oa, model: gpt-4o-mini}}}}
"""

LINE = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}}
                  ).encode() + b"\n"


@pytest.fixture
def hosts():
    with Elsewhere() as elsewhere, Hostile(f"http://127.0.0.1:{elsewhere.port}") as hostile:
        yield hostile, elsewhere


@pytest.fixture
async def native(tmp_path, hosts):
    hostile, _ = hosts
    runtime = Runtime()
    text = CONFIG.format(base_url=hostile.base_url, key=KEY)
    routes = compile_bytes(text.encode(), str(tmp_path / "gateway.yaml"), runtime=runtime).routes
    store = FileStore(str(tmp_path / "data"))
    upload = store.begin(Owner("a" * 64, "alice"), "in.jsonl", "batch")
    upload.write(LINE)
    record = await upload.commit()
    provider, models = native_target(routes, {"gpt"})
    try:
        yield NativeBatches(store), provider, models, record
    finally:
        await store.aclose()
        await runtime.clients.close()


@pytest.mark.parametrize("path", ["/v1/files", "/v1/batches"])
async def test_a_redirect_is_never_followed_with_the_key(hosts, native, path):
    """A 307 from the provider's /files or /batches is an error of the provider (502); the
    host it points to gets nothing, the key least of all."""
    hostile, elsewhere = hosts
    batches, provider, models, record = native
    hostile.redirect.add(path)
    with pytest.raises(GatewayError) as caught:
        await batches.submit(provider, models, record, "/v1/chat/completions", "24h")
    assert caught.value.status == 502 and "307" in caught.value.message
    assert elsewhere.seen == []


async def test_a_streamed_download_never_follows_a_redirect(hosts, native):
    hostile, elsewhere = hosts
    _, provider, _, _ = native
    hostile.redirect.add("/v1/files/file-x/content")
    with pytest.raises(GatewayError) as caught:
        async for _ in stream(provider, "/files/file-x/content"):
            pass
    assert caught.value.status == 502
    assert elsewhere.seen == []


@pytest.mark.parametrize("output_id", ["../../admin/keys", "%2e%2e/%2e%2e/steal", "a?b=1",
                                       "http://127.0.0.1:1/x", "a#b", "", ".."])
async def test_ids_from_the_provider_name_only_that_resource(hosts, native, output_id):
    """An output file id such as ``../../admin/keys`` in the provider's batch is refused
    (502 bad_upstream) before any request is made with it: the key goes only to the paths the
    gateway means (its /files/{id}/content), nowhere else on that host either."""
    hostile, elsewhere = hosts
    batches, provider, models, record = native
    batch = await batches.submit(provider, models, record, "/v1/chat/completions", "24h")
    hostile.output_id = output_id
    before = len(hostile.paths)
    done = await batches.refresh(provider, batch["id"])
    assert done["output_file_id"] == output_id
    if output_id:
        with pytest.raises(GatewayError) as caught:
            await batches.collect(provider, done, Owner("a" * 64, "alice"))
        assert caught.value.status == 502 and caught.value.code == "bad_upstream"
        assert hostile.paths[before + 1:] == []  # nothing asked for after the refresh
    for bad in ("../x", "x/../../y", "..", "a?b", "%2E%2E"):
        with pytest.raises(GatewayError):
            await call(provider, "GET", f"/batches/{bad}")
    assert all(p.startswith(("/v1/files", "/v1/batches")) for p in hostile.paths), hostile.paths
    assert elsewhere.seen == []


PII_CONFIG = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  oa: {{type: openai, base_url: "{base_url}", api_key: {key}, batch: native}}
routes:
  gpt: {{target: {{provider: oa, model: gpt-4o-mini}}}}
plugins:
  - {{name: {plugin}}}
"""
EMAIL = "jane.doe@example.com"
PII = "pii-redact, config: {{mode: mask}}"
GUARD = "output-guard, config: {{deny: ['(?i)secret plan'], on_fail: fallback}}"


@pytest.mark.parametrize("plugin", [PII, GUARD], ids=["pii-redact", "output-guard"])
def test_no_native_batch_past_a_plugin(gateway_app, tmp_path, plugin):
    """A native batch hands the file to the provider as it is, past every plugin: with one
    that reads requests (pii-redact masking personal data) or answers (output-guard checking
    them) the gateway runs the batch itself, line by line through the plugins; the provider's
    Batch API never sees the data, nor answers the guard did not check."""
    with FakeBatchAPI() as fake:
        gw = gateway_app(PII_CONFIG.replace("{plugin}", plugin).format(
            data=tmp_path / "data", base_url=fake.base_url, key=KEY))
        line = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                           "body": {"model": "gpt", "messages": [
                               {"role": "user", "content": f"Write to {EMAIL}"}]}}).encode()
        uploaded = gw.post("/v1/files", data={"purpose": "batch"},
                           files={"file": ("in.jsonl", line)}).json()
        made = gw.post("/v1/batches", json={"input_file_id": uploaded["id"],
                                            "endpoint": "/v1/chat/completions",
                                            "completion_window": "24h"})
        assert made.status_code == 200, made.text
        assert fake.batches == {} and fake.files == {}
        assert all(EMAIL.encode() not in f["content"] for f in fake.files.values())
