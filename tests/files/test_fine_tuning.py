"""/v1/fine_tuning/jobs through the real app with the official openai client, passed through to
a fake OpenAI fine-tuning API on loopback: the training file taken from /v1/files and uploaded
to the provider, the job recorded against the key, the gateway's ids in every answer."""

from __future__ import annotations

import hashlib
import json
import time

import openai
import pytest

from ..fake_finetune import KEY, FakeFineTuning

CONFIG = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  tuner: {{type: openai, base_url: "{base_url}", api_key: {key}, fine_tuning: true}}
  shut: {{type: openai, base_url: "{base_url}", api_key: {key}}}
  demo: {{type: mock}}
routes:
  my-base:
    fallback:
      targets:
        - target: {{provider: demo, model: m}}
        - target: {{provider: tuner, model: gpt-4o-mini-2024-07-18}}
  offline: {{target: {{provider: demo, model: m}}}}
  closed: {{target: {{provider: shut, model: gpt-4o-mini-2024-07-18}}}}
keys:
  alice: {{key_sha256: {alice}}}
  bob: {{key_sha256: {bob}}}
"""
TRAINING = b"".join(json.dumps({"messages": [
    {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}).encode()
    + b"\n" for i in range(20))


@pytest.fixture
def upstream():
    with FakeFineTuning() as fake:
        yield fake


@pytest.fixture
def gw(gateway_app, tmp_path, upstream):
    digest = {n: hashlib.sha256(f"sk-{n}".encode()).hexdigest() for n in ("alice", "bob")}
    return gateway_app(CONFIG.format(data=tmp_path / "data", base_url=upstream.base_url,
                                     key=KEY, **digest))


def test_job_lifecycle(gw, upstream):
    """A job's files go to the provider first; the job is created there with the provider's
    file ids and the route's model; every answer has the gateway's ids; retrieve and list
    follow the provider's state; events and cancel pass through."""
    client = gw.openai("sk-alice")
    training = client.files.create(file=("train.jsonl", TRAINING), purpose="fine-tune")
    validation = client.files.create(file=("val.jsonl", TRAINING[:200].rsplit(b"\n", 1)[0]),
                                     purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="my-base", training_file=training.id,
                                         validation_file=validation.id, suffix="mine",
                                         hyperparameters={"n_epochs": 2})
    assert job.id.startswith("ftjob-") and job.id not in upstream.jobs
    assert (job.training_file, job.validation_file) == (training.id, validation.id)
    assert job.status == "validating_files"
    sent = upstream.created[-1]
    assert sent["model"] == "gpt-4o-mini-2024-07-18" and sent["suffix"] == "mine"
    assert sent["hyperparameters"] == {"n_epochs": 2}
    assert upstream.files[sent["training_file"]]["content"] == TRAINING
    assert upstream.files[sent["training_file"]]["purpose"] == "fine-tune"
    assert upstream.files[sent["validation_file"]]["filename"] == "val.jsonl"
    (provider_id,) = upstream.jobs
    upstream.advance(provider_id, "running")
    assert [j.status for j in client.fine_tuning.jobs.list()] == ["running"]
    upstream.advance(provider_id, "succeeded", fine_tuned_model="ft:gpt-4o-mini:org::abc")
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert (done.id, done.status, done.fine_tuned_model) == (job.id, "succeeded",
                                                             "ft:gpt-4o-mini:org::abc")
    events = client.fine_tuning.jobs.list_events(job.id, limit=1)
    assert [e.message for e in events.data] == ["Validating training file"]
    other = client.fine_tuning.jobs.create(model="my-base", training_file=training.id)
    cancelled = client.fine_tuning.jobs.cancel(other.id)
    assert (cancelled.id, cancelled.status) == (other.id, "cancelled")
    listed = client.fine_tuning.jobs.list()
    assert [j.id for j in listed.data] == [other.id, job.id]
    assert [j.status for j in listed.data] == ["cancelled", "succeeded"]


def test_jobs_belong_to_their_key(gw, upstream):
    """Another key gets 404 for a job (retrieve, cancel, events) and does not list it; it
    cannot start a job on someone else's file either."""
    alice, bob = gw.openai("sk-alice"), gw.openai("sk-bob")
    training = alice.files.create(file=("train.jsonl", TRAINING), purpose="fine-tune")
    job = alice.fine_tuning.jobs.create(model="my-base", training_file=training.id)
    for call in (lambda: bob.fine_tuning.jobs.retrieve(job.id),
                 lambda: bob.fine_tuning.jobs.cancel(job.id),
                 lambda: bob.fine_tuning.jobs.list_events(job.id),
                 lambda: bob.fine_tuning.jobs.create(model="my-base", training_file=training.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert list(bob.fine_tuning.jobs.list()) == []
    assert len(upstream.created) == 1
    assert gw.get(f"/v1/fine_tuning/jobs/{job.id}").status_code == 401


def test_refusals(gw, upstream):
    """Clear 4xx answers: an unknown route (404), a route without a fine-tuning provider
    (400), a file of another purpose (400), bad JSON (400); a provider's refusal keeps its
    status, with the provider's credentials scrubbed from the message."""
    client = gw.openai("sk-alice")
    training = client.files.create(file=("train.jsonl", TRAINING), purpose="fine-tune")
    notes = client.files.create(file=("n.txt", b"notes"), purpose="user_data")
    with pytest.raises(openai.NotFoundError) as caught:
        client.fine_tuning.jobs.create(model="nope", training_file=training.id)
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model="offline", training_file=training.id)
    assert caught.value.code == "fine_tuning_unsupported"
    with pytest.raises(openai.PermissionDeniedError) as caught:  # not opened by the operator
        client.fine_tuning.jobs.create(model="closed", training_file=training.id)
    assert caught.value.code == "fine_tuning_closed"
    assert "providers.shut.fine_tuning: true" in caught.value.message
    assert upstream.created == [] and upstream.files == {}  # nothing reached the provider
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model="my-base", training_file=notes.id)
    assert "purpose 'fine-tune'" in caught.value.message
    bad = gw.post("/v1/fine_tuning/jobs", content=b"{nope",
                  headers={"Authorization": "Bearer sk-alice",
                           "Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    upstream.fail_create = 422
    refused = gw.post("/v1/fine_tuning/jobs", json={"model": "my-base",
                                                    "training_file": training.id},
                      headers={"Authorization": "Bearer sk-alice"})
    assert refused.status_code == 422
    assert KEY not in refused.text and "refused" in refused.json()["error"]["message"]
    assert list(client.fine_tuning.jobs.list()) == []
    assert upstream.files == {} and len(upstream.deleted) == 1  # the upload, deleted again


def start(gateway_app, tmp_path, upstream, settings: str = ""):
    """The gateway of CONFIG, asking jobs not ended for their state every 50 ms."""
    digest = {n: hashlib.sha256(f"sk-{n}".encode()).hexdigest() for n in ("alice", "bob")}
    return gateway_app(CONFIG.format(data=tmp_path / "data", base_url=upstream.base_url,
                                     key=KEY, **digest)
                       + f"fine_tuning: {{poll: 50ms{settings}}}\n")


def wait(check, what: str, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return found


def test_files_deleted_at_the_provider_once_a_job_ends(gateway_app, tmp_path, upstream):
    """Succeeded, failed or cancelled, the training and validation files uploaded for a job
    are deleted at the provider, without anyone asking for the job (the background task
    asks the provider for jobs not ended), and only then: a running job keeps them. The
    gateway's own files stay."""
    gw = start(gateway_app, tmp_path, upstream)
    client = gw.openai("sk-alice")
    training = client.files.create(file=("train.jsonl", TRAINING), purpose="fine-tune")
    validation = client.files.create(file=("val.jsonl", TRAINING[:200].rsplit(b"\n", 1)[0]),
                                     purpose="fine-tune")
    jobs = [client.fine_tuning.jobs.create(model="my-base", training_file=training.id,
                                           validation_file=validation.id) for _ in range(3)]
    remote = list(upstream.jobs)
    sent = {job_id: {upstream.jobs[job_id]["training_file"],
                     upstream.jobs[job_id]["validation_file"]} for job_id in remote}
    upstream.advance(remote[0], "running")
    upstream.advance(remote[1], "succeeded", fine_tuned_model="ft:x")
    upstream.advance(remote[2], "failed", error={"message": "bad data"})
    wait(lambda: set(upstream.deleted) == sent[remote[1]] | sent[remote[2]], "deletes")
    polls = upstream.polls
    wait(lambda: upstream.polls > polls + 2, "more polls of the running job")
    assert sent[remote[0]] <= set(upstream.files)  # a running job keeps its files
    assert client.fine_tuning.jobs.cancel(jobs[0].id).status == "cancelled"
    wait(lambda: not upstream.files, "the cancelled job's files deleted")
    assert len(upstream.deleted) == 6
    assert [j.status for j in client.fine_tuning.jobs.list()] == [
        "failed", "succeeded", "cancelled"]
    assert client.files.content(training.id).read() == TRAINING  # the gateway's copy stays


def test_only_the_first_worker_polls(gateway_app, tmp_path, upstream, monkeypatch):
    """Under --workers N, worker 0 asks the provider and deletes for the data directory; a
    second worker (GATEWAY_WORKER_INDEX=1) leaves it to worker 0."""
    monkeypatch.setenv("GATEWAY_WORKER_INDEX", "1")
    gw = start(gateway_app, tmp_path, upstream)
    client = gw.openai("sk-alice")
    training = client.files.create(file=("train.jsonl", TRAINING), purpose="fine-tune")
    client.fine_tuning.jobs.create(model="my-base", training_file=training.id)
    (remote,) = upstream.jobs
    upstream.advance(remote, "succeeded")
    polls = upstream.polls
    time.sleep(0.3)  # six polls of worker 0's task
    assert upstream.polls == polls and upstream.deleted == []


def test_deletes_the_provider_refuses_are_tried_again(gateway_app, tmp_path, upstream):
    """A delete answered 500 is tried again at the next poll until it succeeds."""
    gw = start(gateway_app, tmp_path, upstream)
    client = gw.openai("sk-alice")
    training = client.files.create(file=("train.jsonl", TRAINING), purpose="fine-tune")
    client.fine_tuning.jobs.create(model="my-base", training_file=training.id)
    (remote,) = upstream.jobs
    upstream.fail_deletes = 3
    upstream.advance(remote, "succeeded")
    wait(lambda: upstream.deleted == [upstream.jobs[remote]["training_file"]], "the delete")
    assert upstream.fail_deletes == 0 and upstream.files == {}


def test_files_kept_when_asked(gateway_app, tmp_path, upstream):
    """fine_tuning: {keep_provider_files: true} leaves them at the provider."""
    gw = start(gateway_app, tmp_path, upstream, ", keep_provider_files: true")
    client = gw.openai("sk-alice")
    training = client.files.create(file=("train.jsonl", TRAINING), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="my-base", training_file=training.id)
    (remote,) = upstream.jobs
    upstream.advance(remote, "succeeded")
    wait(lambda: client.fine_tuning.jobs.retrieve(job.id).status == "succeeded", "success")
    polls = upstream.polls
    time.sleep(0.3)  # six polls of the background task
    assert upstream.polls == polls  # an ended job is not asked again
    assert upstream.deleted == [] and len(upstream.files) == 1


def test_fine_tuning_needs_a_provider_that_can(tmp_path):
    """fine_tuning: true on a provider without OpenAI's fine-tuning API is a config error at
    its line."""
    from gateway.config.compiler import compile_bytes
    from gateway.errors import ConfigErrors

    text = ("version: 1\nproviders:\n  claude: {type: anthropic, api_key: x, fine_tuning: true}\n"
            "routes:\n  r: {target: {provider: claude, model: m}}\n")
    with pytest.raises(ConfigErrors) as caught:
        compile_bytes(text.encode(), str(tmp_path / "gateway.yaml"), version=1)
    assert "gateway.yaml:3:" in str(caught.value) and "fine_tuning: true needs type" in str(caught.value)
