"""Provider-native batches (gateway/files/native_batches.py) against a fake OpenAI Batch API on
loopback: which batches go native, the input file uploaded with each line's model the target's,
the provider's status and counts mapped, its output and error files copied into the gateway's
files (encrypted, owned by the batch's owner)."""

from __future__ import annotations

import json

import pytest

from gateway.config.compiler import Runtime, compile_bytes
from gateway.errors import ConfigErrors
from gateway.files.native_batches import NativeBatches, mapped, native_target
from gateway.files.store import FileStore, Owner

from ..fake_batches import KEY, FakeBatchAPI

CONFIG = """
version: 1
providers:
  oa: {{type: openai, base_url: "{base_url}", api_key: {key}, batch: native}}
  plain: {{type: openai, base_url: "{base_url}", api_key: {key}}}
  demo: {{type: mock}}
routes:
  gpt: {{target: {{provider: oa, model: gpt-4o-mini}}}}
  gpt-safe:
    fallback:
      targets:
        - target: {{provider: demo, model: m}}
        - target: {{provider: oa, model: gpt-4o}}
  other: {{target: {{provider: plain, model: gpt-4o}}}}
  offline: {{target: {{provider: demo, model: m}}}}
"""


@pytest.fixture
def fake():
    with FakeBatchAPI() as api:
        yield api


def graph(tmp_path, fake, runtime):
    text = CONFIG.format(base_url=fake.base_url, key=KEY)
    return compile_bytes(text.encode(), str(tmp_path / "gateway.yaml"), runtime=runtime)


def line(custom_id: str, model: str) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": model, "messages": [{"role": "user", "content": "hi"}]}
                       }).encode() + b"\n"


def test_which_batches_go_native(tmp_path, fake):
    """Native when every route of the batch reaches a batch: native provider (its first such
    target), the same one for all; else the gateway runs the batch."""
    routes = graph(tmp_path, fake, Runtime()).routes
    found = native_target(routes, {"gpt", "gpt-safe"})
    assert found is not None
    provider, models = found
    assert provider.name == "oa" and models == {"gpt": "gpt-4o-mini", "gpt-safe": "gpt-4o"}
    assert native_target(routes, {"gpt", "offline"}) is None
    assert native_target(routes, {"other"}) is None
    assert native_target(routes, {"nope"}) is None


def test_native_only_for_openai_types(tmp_path):
    """batch: native on a provider without OpenAI's Batch API is a config error at its line."""
    text = "version: 1\nproviders:\n  demo: {type: mock, batch: native}\nroutes:\n" \
           "  r: {target: {provider: demo, model: m}}\n"
    with pytest.raises(ConfigErrors) as caught:
        compile_bytes(text.encode(), str(tmp_path / "gateway.yaml"))
    assert ":3:" in str(caught.value) and "batch: native needs type openai" in str(caught.value)


async def test_submit_poll_collect(tmp_path, fake):
    """The input goes up with the targets' models, the batch is created; its status and counts
    map back; the output and error files land in the gateway's files, readable by the owner
    only, encrypted on disk."""
    runtime = Runtime()
    routes = graph(tmp_path, fake, runtime).routes
    store = FileStore(str(tmp_path / "data"))
    owner = Owner("a" * 64, "alice")
    try:
        upload = store.begin(owner, "in.jsonl", "batch")
        upload.write(line("one", "gpt") + line("fail-two", "gpt-safe") + line("three", "gpt"))
        record = await upload.commit()
        provider, models = native_target(routes, {"gpt", "gpt-safe"})
        batches = NativeBatches(store)
        batch = await batches.submit(provider, models, record, "/v1/chat/completions", "24h",
                                     {"team": "x"})
        sent = fake.files[batch["input_file_id"]]
        assert sent["purpose"] == "batch" and sent["filename"] == "in.jsonl"
        assert [json.loads(x)["body"]["model"] for x in sent["content"].splitlines()] == [
            "gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]
        assert fake.batches[batch["id"]]["metadata"] == {"team": "x"}
        assert mapped(await batches.refresh(provider, batch["id"]))["status"] == "validating"
        fake.finish(batch["id"])
        done = await batches.refresh(provider, batch["id"])
        values = mapped(done)
        assert values["status"] == "completed" and values["completed_at"] == 100
        assert (values["total"], values["completed"], values["failed"]) == (3, 2, 1)
        ids = await batches.collect(provider, done, owner)
        output = await store.require(ids["output_file_id"], owner)
        errors = await store.require(ids["error_file_id"], owner)
        assert output["purpose"] == "batch_output"
        got = b"".join([c async for c in store.read(output)])
        assert got == fake.files[done["output_file_id"]]["content"]
        assert [json.loads(x)["custom_id"] for x in got.splitlines()] == ["one", "three"]
        failed = b"".join([c async for c in store.read(errors)])
        assert json.loads(failed)["error"]["message"] == "refused by the fake"
        assert await store.get(ids["output_file_id"], Owner("b" * 64, "bob")) is None
        assert b"answer 0" not in (tmp_path / "data" / "files" / output["id"]).read_bytes()
        row = {"provider_batch_id": batch["id"], "status": "in_progress"}
        stepped = await batches.step(provider, row, owner)
        assert stepped["status"] == "completed" and stepped["output_file_id"].startswith("file-")
        second = await batches.submit(provider, models, record, "/v1/chat/completions", "24h")
        row = {"provider_batch_id": second["id"], "status": "cancelling"}
        assert (await batches.step(provider, row, owner))["status"] == "cancelling"
        assert fake.batches[second["id"]]["status"] == "cancelling"
    finally:
        await store.aclose()
        await runtime.clients.close()


def test_native_is_reported_inactive_until_wired(tmp_path, fake):
    """Until /v1/batches hands batches to providers, batch: native is accepted with a warning
    that it has no effect yet."""
    found = graph(tmp_path, fake, Runtime())
    assert any("not active in this build yet" in str(w) and "providers.oa.batch" in str(w)
               for w in found.warnings)
