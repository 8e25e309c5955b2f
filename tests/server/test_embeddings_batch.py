"""Micro-batching of embeddings (route `batch:`): concurrent requests from the official openai
client, through the real app in process, to a fake OpenAI upstream on loopback that counts the
calls it gets and embeds each input as a vector of its own."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from gateway.config.compiler import compile_bytes
from gateway.errors import ConfigErrors
from gateway.providers.microbatch import share

from ..fake_upstream import Behaviour, input_vector
from .inprocess import app_client

CONFIG = """
version: 1
defaults:
  retry: {{attempts: {attempts}, base: 10ms, jitter: false}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}", api_key: upstream-secret}}
routes:
  embed:
    target: {{provider: up, model: embed-a}}
    batch: {{max_size: {max_size}, max_wait: {max_wait}}}
  embed-fallback:
    fallback:
      targets:
        - target: {{provider: up, model: embed-a}}
        - target: {{provider: up, model: embed-b}}
    batch: {{max_size: {max_size}, max_wait: {max_wait}}}
  plain: {{target: {{provider: up, model: embed-a}}}}
"""


@pytest.fixture
def fake(upstream):
    upstream.vectors_of_input = True
    return upstream


def config(upstream, *, max_size: int = 64, max_wait: str = "100ms", attempts: int = 1) -> str:
    return CONFIG.format(base_url=upstream.base_url, max_size=max_size, max_wait=max_wait,
                         attempts=attempts)


def sdk(http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url="http://127.0.0.1/v1", api_key="x", http_client=http,
                              max_retries=0)


def calls(upstream) -> list[list]:
    """The inputs of each embeddings call the upstream got."""
    return [r.body["input"] for r in upstream.requests if r.path == "/v1/embeddings"]


def inputs_of(i: int) -> str | list[str]:
    """Request i's input: a string, or a few of them (of different lengths)."""
    text = f"request {i} " + "w " * i
    return text if i % 3 else [text, f"second of {i}", "x" * (i + 1)]


async def test_concurrent_requests_are_merged(tmp_path, fake):
    """20 concurrent requests reach the upstream as one or two calls; each client gets exactly
    its own vectors, in its order, and a share of the usage; the shares add up to the
    tokens the upstream counted."""
    async with app_client(config(fake), tmp_path) as http:
        client = sdk(http)
        answers = await asyncio.gather(*(
            client.embeddings.create(model="embed", input=inputs_of(i), encoding_format="float")
            for i in range(20)))
    sent = calls(fake)
    assert 1 <= len(sent) <= 2, f"{len(sent)} upstream calls for 20 requests"
    for i, answer in enumerate(answers):
        mine = inputs_of(i)
        mine = [mine] if isinstance(mine, str) else mine
        assert [d.index for d in answer.data] == list(range(len(mine)))
        assert [d.embedding for d in answer.data] == [input_vector(t) for t in mine]
        assert answer.model == "embed-a"
    upstream_tokens = sum(len(t.split()) for inputs in sent for t in inputs)
    assert sum(a.usage.prompt_tokens for a in answers) == upstream_tokens
    assert sum(a.usage.total_tokens for a in answers) == upstream_tokens
    longest = max(range(20), key=lambda i: len(str(inputs_of(i))))
    assert answers[longest].usage.prompt_tokens >= answers[1].usage.prompt_tokens


async def test_merged_answer_headers_and_lone_request(tmp_path, fake):
    """A merged answer says how many requests shared the call (x-gateway-batch); a request
    alone in its window is sent as the client sent it, after waiting max_wait at most."""
    async with app_client(config(fake, max_wait="150ms"), tmp_path) as http:
        started = time.monotonic()
        alone = await http.post("/v1/embeddings", json={"model": "embed", "input": "solo"})
        waited = time.monotonic() - started
        pair = await asyncio.gather(*(
            http.post("/v1/embeddings", json={"model": "embed", "input": f"pair {i}"})
            for i in range(2)))
    assert alone.status_code == 200 and "x-gateway-batch" not in alone.headers
    assert 0.15 <= waited < 1.5
    assert fake.requests[0].body["input"] == "solo"  # untouched: no merge happened
    assert [r.headers["x-gateway-batch"] for r in pair] == ["2", "2"]
    assert [r.json()["data"][0]["embedding"] for r in pair] == [
        input_vector("pair 0"), input_vector("pair 1")]
    assert calls(fake)[1:] == [["pair 0", "pair 1"]]


async def test_max_size(tmp_path, fake):
    """No call carries more than max_size inputs; a request of max_size inputs or more goes
    alone, its inputs in one call of their own."""
    big = [f"big {i}" for i in range(5)]
    async with app_client(config(fake, max_size=4), tmp_path) as http:
        client = sdk(http)
        answers = await asyncio.gather(
            client.embeddings.create(model="embed", input=big, encoding_format="float"),
            *(client.embeddings.create(model="embed", input=f"small {i}", encoding_format="float")
              for i in range(10)))
    sent = calls(fake)
    assert big in sent
    assert all(len(inputs) <= 4 for inputs in sent if inputs != big)
    assert 3 <= len(sent) <= 5  # 10 small inputs in calls of 4 at most, and the big one
    assert sorted(t for inputs in sent for t in ([inputs] if isinstance(inputs, str) else inputs)) \
        == sorted(big + [f"small {i}" for i in range(10)])
    alone = sorted(answers[0].data, key=lambda d: d.index)  # passed through as it came
    assert [d.embedding for d in alone] == [input_vector(t) for t in big]
    for i, answer in enumerate(answers[1:]):
        assert [d.embedding for d in answer.data] == [input_vector(f"small {i}")]


async def test_other_parameters_are_not_merged(tmp_path, fake):
    """Requests that differ in anything but their input (dimensions here) get calls of their
    own; so do token arrays and strings."""
    async with app_client(config(fake), tmp_path) as http:
        bodies = [{"model": "embed", "input": "a", "dimensions": 8},
                  {"model": "embed", "input": "b", "dimensions": 8},
                  {"model": "embed", "input": "c", "dimensions": 16},
                  {"model": "embed", "input": [1, 2, 3]},
                  {"model": "embed", "input": [[4, 5]]}]
        answers = await asyncio.gather(*(http.post("/v1/embeddings", json=b) for b in bodies))
    assert [a.status_code for a in answers] == [200] * 5
    sent = sorted(calls(fake), key=str)
    assert sent == sorted([["a", "b"], "c", [[1, 2, 3], [4, 5]]], key=str)
    assert answers[3].json()["data"][0]["embedding"] == [1.0, 2.0, 3.0]
    assert answers[4].json()["data"][0]["embedding"] == [4.0, 5.0]


async def test_failed_merged_call_fails_every_member(tmp_path, fake):
    """A merged call that fails (500, no retries) fails every member with that status; the
    circuit breaker counts it as the one failed call it was (6 members, failure_threshold 5:
    the circuit stays closed)."""
    fake.script("embed-a", Behaviour(status=500, error_code="boom"))
    async with app_client(config(fake), tmp_path) as http:
        answers = await asyncio.gather(*(
            http.post("/v1/embeddings", json={"model": "embed", "input": f"t{i}"})
            for i in range(6)))
        after = await http.post("/v1/embeddings", json={"model": "embed", "input": "after"})
    assert [a.status_code for a in answers] == [500] * 6
    assert all(a.json()["error"]["message"] for a in answers)
    assert after.status_code == 200
    assert len(calls(fake)) == 2


async def test_retries_and_fallbacks_stay_per_request(tmp_path, fake):
    """After a failed merged call each member retries on its own policy (the retries merge
    again), and with a fallback moves on to the next target (merged there too)."""
    fake.script("embed-a", 503)
    async with app_client(config(fake, attempts=2), tmp_path) as http:
        retried = await asyncio.gather(*(
            http.post("/v1/embeddings", json={"model": "embed", "input": f"r{i}"})
            for i in range(5)))
    assert [a.status_code for a in retried] == [200] * 5
    assert [a.headers["x-gateway-attempts"] for a in retried] == ["2"] * 5
    assert len(calls(fake)) == 2
    fake.requests.clear()
    fake.script("embed-a", 503)
    async with app_client(config(fake), tmp_path) as http:
        fell = await asyncio.gather(*(
            http.post("/v1/embeddings", json={"model": "embed-fallback", "input": f"f{i}"})
            for i in range(5)))
    assert [a.status_code for a in fell] == [200] * 5
    assert {a.headers["x-gateway-target"] for a in fell} == {"up/embed-b"}
    assert [r.body["model"] for r in fake.requests] == ["embed-a", "embed-b"]
    assert [f.json()["data"][0]["embedding"] for f in fell] == [
        input_vector(f"f{i}") for i in range(5)]


async def test_client_error_of_a_merged_call_sends_each_alone(tmp_path, fake):
    """A 400 may come from one member's input alone: then each member sends its own request
    (here they all pass), instead of all failing."""
    fake.script("embed-a", 400)
    async with app_client(config(fake), tmp_path) as http:
        answers = await asyncio.gather(*(
            http.post("/v1/embeddings", json={"model": "embed", "input": f"c{i}"})
            for i in range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    sent = calls(fake)
    assert len(sent[0]) == 4 and sorted(sent[1:]) == [f"c{i}" for i in range(4)]


async def test_routes_without_batch_are_not_merged(tmp_path, fake):
    """A route without `batch:` sends every request on its own, even to the same target."""
    async with app_client(config(fake), tmp_path) as http:
        await asyncio.gather(*(
            http.post("/v1/embeddings", json={"model": "plain", "input": f"p{i}"})
            for i in range(4)))
    assert sorted(calls(fake)) == [f"p{i}" for i in range(4)]


def test_max_wait_is_bounded(tmp_path):
    """A batch max_wait over 1s is a config error at its line."""
    text = ("version: 1\nproviders:\n  demo: {type: mock}\nroutes:\n  e:\n"
            "    target: {provider: demo, model: m}\n    batch: {max_wait: 2s}\n")
    with pytest.raises(ConfigErrors) as caught:
        compile_bytes(text.encode(), str(tmp_path / "gateway.yaml"))
    assert "batch max_wait must be at most 1s" in str(caught.value)
    assert ":7:" in str(caught.value)


@pytest.mark.parametrize("total,weights,parts", [
    (10, [1, 1], [5, 5]),
    (10, [1, 2], [3, 7]),
    (7, [1, 1, 1], [3, 2, 2]),
    (0, [3, 4], [0, 0]),
    (5, [0, 0], [3, 2]),
])
def test_usage_share(total, weights, parts):
    """Tokens are split in proportion to input size; the parts add up to the total."""
    assert share(total, weights) == parts
    assert sum(share(total, weights)) == total


async def test_a_request_that_leaves_is_not_sent(tmp_path, fake):
    """A client that leaves while its request waits for others takes its input out of the
    call; the others are answered as usual."""
    async with app_client(config(fake, max_wait="300ms"), tmp_path) as http:
        leaving = asyncio.create_task(
            http.post("/v1/embeddings", json={"model": "embed", "input": "gone"}))
        staying = [asyncio.create_task(
            http.post("/v1/embeddings", json={"model": "embed", "input": f"s{i}"}))
            for i in range(2)]
        await asyncio.sleep(0.1)
        leaving.cancel()
        answers = await asyncio.gather(*staying)
    assert [a.status_code for a in answers] == [200, 200]
    assert calls(fake) == [["s0", "s1"]]
