"""Provider-native batches (gateway/files/native_batches.py) against a fake OpenAI Batch API on
loopback: which batches go native, the input file uploaded with each line's model the target's,
the provider's status and counts mapped, its output and error files copied into the gateway's
files (encrypted, owned by the batch's owner)."""

from __future__ import annotations

import json
import time

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


def wait_for(check, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_v1_batches_hands_native_batches_to_the_provider(gateway_app, tmp_path, fake):
    """Through /v1/batches with the openai client: a batch whose routes reach the batch: native
    provider is created there, followed (status, counts), and its output and error files come
    back as the caller's files; a cancel is passed on; a batch for other routes runs in the
    gateway as before."""
    gw = gateway_app(CONFIG.format(base_url=fake.base_url, key=KEY)
                     + f'server: {{data_dir: "{tmp_path / "data"}"}}\n'
                     + "batches: {native_poll: 100ms}\n")
    client = gw.openai()
    lines = line("one", "gpt") + line("fail-two", "gpt-safe") + line("three", "gpt")
    uploaded = client.files.create(file=("in.jsonl", lines), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"team": "x"})
    (provider_id,) = fake.batches
    assert batch.id.startswith("batch_") and batch.status == "validating"
    assert batch.input_file_id == uploaded.id
    sent = fake.files[fake.batches[provider_id]["input_file_id"]]["content"]
    assert [json.loads(x)["body"]["model"] for x in sent.splitlines()] == [
        "gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]
    fake.finish(provider_id)
    done = wait_for(lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b,
                    "the native batch to complete")
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (3, 2, 1)
    output = client.files.content(done.output_file_id).read()
    remote = {**fake.files, **fake.gone}  # deleted at the provider once copied in
    assert output == remote[fake.batches[provider_id]["output_file_id"]]["content"]
    errors = client.files.content(done.error_file_id).read()
    assert json.loads(errors)["custom_id"] == "fail-two"
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"

    second = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                   completion_window="24h")
    assert client.batches.cancel(second.id).status == "cancelling"
    (second_id,) = set(fake.batches) - {provider_id}
    wait_for(lambda: fake.batches[second_id]["status"] == "cancelling", "the cancel upstream")

    local = client.files.create(file=("local.jsonl", line("l1", "offline")), purpose="batch")
    ran = client.batches.create(input_file_id=local.id, endpoint="/v1/chat/completions",
                                completion_window="24h")
    wait_for(lambda: client.batches.retrieve(ran.id).status == "completed", "the gateway batch")
    assert len(fake.batches) == 2  # not sent to the provider


def test_a_key_cannot_reach_a_route_through_a_native_batch(gateway_app, tmp_path, fake):
    """A key allowed only `offline` whose batch names `gpt` does not get it run by the
    provider: the gateway runs it, refusing each such line (403 in the error file)."""
    import hashlib

    digest = hashlib.sha256(b"sk-limited").hexdigest()
    gw = gateway_app(CONFIG.format(base_url=fake.base_url, key=KEY)
                     + f'server: {{data_dir: "{tmp_path / "data"}"}}\n'
                     + f"keys:\n  limited: {{key_sha256: {digest}, routes: [offline]}}\n")
    client = gw.openai("sk-limited")
    uploaded = client.files.create(file=("in.jsonl", line("one", "gpt")), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    done = wait_for(lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b,
                    "the batch to end")
    assert fake.batches == {} and done.request_counts.failed == 1
    error = json.loads(client.files.content(done.error_file_id).read())
    assert error["response"]["status_code"] == 403


async def test_a_cancel_asked_during_a_poll_stays(tmp_path):
    """The provider's state written after a poll does not undo a cancel the client asked
    meanwhile (the row stays cancelling, passed on at the next poll) unless the batch ended."""
    from gateway.files.native_follow import _native_values
    from gateway.store import files_db

    store = FileStore(str(tmp_path / "data"))
    row = {"id": "batch_x", "owner": "", "endpoint": "/v1/chat/completions",
           "input_file_id": "file-x", "completion_window": "24h", "status": "cancelling",
           "created_at": 1, "expires_at": 2, "total": 1, "completed": 0, "failed": 0}
    try:
        await store.writer.run(lambda c: files_db.insert_batch(c, row))
        for values, status in (({"status": "validating", "total": 3}, "cancelling"),
                               ({"status": "cancelled", "completed": 1}, "cancelled")):
            await store.writer.run(lambda c: _native_values(c, "batch_x", dict(values)))
            got = await store.writer.run(lambda c: files_db.get_batch(c, "batch_x"))
            assert got["status"] == status and got["total"] == 3
        assert got["completed"] == 1
    finally:
        await store.aclose()
